"""The engine of synth_pipeline: a plain library with no Dagster imports.

schema      reading tables, columns, types and keys from a read-only source
summarise   aggregate SQL pushed down to the source, passed through disclosure control
disclosure  the rules that decide what may leave the trusted environment
config      the reviewed per-table YAML: models, validation, fingerprints, proposals
generators  the catalogue of column generators
synthesise  turning an approved config into chunks of synthetic rows
write       creating and filling destination tables, replaced atomically
bundle      the publishable CSV bundle with manifest, checksums and disclaimer
"""

GENERATOR_VERSION = "0.1.0"

DISCLAIMER = (
    "These data are artificially generated, any resemblance to real patients is coincidental."
)
