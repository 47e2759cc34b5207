//! Trust in upstream issuers: their key sets (`keyset`, parsed; `jwks`,
//! fetched and cached) and the validation rules
//! for every kind of inbound token (`validate`).

pub mod jwks;
pub mod keyset;
pub mod validate;
