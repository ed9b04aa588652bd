//! LUKS2 JSON metadata: typed structures and one validation pass as strict (and as lenient) as
//! cryptsetup's `LUKS2_hdr_validate`.
//!
//! The JSON area is read with a parser that accepts exactly what cryptsetup's json-c accepts
//! (see [`json`](self) internals), then checked in cryptsetup 2.6's order: requirements, tokens,
//! digests, segments, keyslots, config, keyslot areas, JSON size, keyslot implementations.
//! The first rule broken is reported as a [`MetadataError`] naming the object and field.
//!
//! Like cryptsetup, validation accepts unknown keyslot, KDF, token, digest and segment types and
//! unknown config flags and requirements; such objects load and are listed, but cannot be used.
//! Values cryptsetup only reads when it uses an object (salts, hash names, most KDF numbers)
//! are not validated either: a problem there is recorded in the object's `defect` field.
//!
//! One deliberate difference: object ids must be canonical decimal numbers that fit `u32`
//! ("0", "7", not "07" or ""). cryptsetup only checks that ids are made of digits, and then
//! resolves "07" inconsistently (as "07" in some lookups, as 7 in others); such a header is
//! refused here with [`MetadataError::IdNotCanonical`] rather than guessed at.

mod build;
mod error;
mod json;
mod model;
mod validate;

pub use error::{Location, MetadataError, Section};
pub use json::{JObject as JsonObject, JVal as JsonValue, JsonErrorKind, JsonType};
pub use model::*;
