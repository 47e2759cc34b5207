//! Trust in upstream issuers: their key sets (`keyset`, parsed; `jwks`,
//! fetched and cached), the validation rules
//! for every kind of inbound token (`validate`), and the signatures already
//! verified (`verified_cache`).

pub mod jwks;
pub mod keyset;
pub mod validate;
pub mod verified_cache;
