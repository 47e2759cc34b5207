//! Trust in upstream issuers: their keys (`jwks`) and the validation rules
//! for every kind of inbound token (`validate`).

pub mod jwks;
pub mod validate;
