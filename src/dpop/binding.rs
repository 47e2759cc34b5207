//! Which key a new token is bound to (`cnf.jkt`, RFC 9449 §6; RFC 7800), as
//! pure rules over three facts: how the presented token is bound, who
//! presents it, and which key (if any) the request proved.
//!
//! Owns: the rule that a binding never silently disappears. A key-bound
//! token is only ever exchanged or redeemed with a proof, and the new token
//! is always bound to the key the request proved.
//! Must never: bind to a key the request did not prove, or issue an unbound
//! token from a bound one.

/// How the presented token (subject token, ID-JAG) is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound<'a> {
    /// No `cnf` claim: a bearer token.
    No,
    /// `cnf.jkt` (RFC 9449 §6.1): the SHA-256 thumbprint of the holder's key.
    Jkt(&'a str),
    /// A `cnf` we cannot verify (an `x5t#S256` certificate binding, RFC 8705,
    /// or anything else): refused, never treated as a bearer token.
    Unsupported,
}

impl<'a> Bound<'a> {
    /// Read an inbound token's `cnf` claim (RFC 7800 §3.1): absent or `null`
    /// is a bearer token; an object whose only member is a non-empty `jkt`
    /// string is a DPoP binding; anything else (another or a further
    /// confirmation member, a `jkt` that is not a string) is a binding we
    /// cannot verify, and so never a bearer token.
    pub fn of(cnf: Option<&'a serde_json::Value>) -> Self {
        match cnf {
            None | Some(serde_json::Value::Null) => Bound::No,
            Some(serde_json::Value::Object(o)) if o.len() == 1 => match o.get("jkt").and_then(|v| v.as_str()) {
                Some(jkt) if !jkt.is_empty() => Bound::Jkt(jkt),
                _ => Bound::Unsupported,
            },
            Some(_) => Bound::Unsupported,
        }
    }
}

/// Who presents a bound subject token for exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presenter {
    /// The client the token was issued to (`client_id`): its holder, who must
    /// prove the very key it is bound to.
    Holder,
    /// The service the token was issued for (its `aud`), which received it
    /// with the holder's proof (RFC 9449 §7) and now exchanges it for its own
    /// next hop: it proves its own key, and the new token is bound to that.
    Recipient,
}

/// Why no token may be issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The presented token is bound, and the request carried no proof.
    ProofRequired,
    /// The request proved a key other than the one the token is bound to.
    OtherKey,
    /// The token is bound by a confirmation method we do not verify.
    UnsupportedMethod,
}

/// Token exchange (RFC 8693): the `cnf.jkt` of the new token.
///
/// - a bearer subject: bound to the proof's key if a proof came, else not;
/// - a bound subject presented by its holder: only with a proof by that
///   same key, and the new token stays bound to it;
/// - a bound subject presented by the service it was issued for: only with
///   a proof (of the service's own key), and the new token is bound to it.
pub fn exchange(subject: Bound<'_>, presenter: Presenter, proof: Option<&str>) -> Result<Option<String>, Refused> {
    match (subject, presenter, proof) {
        (Bound::Unsupported, _, _) => Err(Refused::UnsupportedMethod),
        (Bound::No, _, proof) => Ok(proof.map(str::to_owned)),
        (Bound::Jkt(_), _, None) => Err(Refused::ProofRequired),
        (Bound::Jkt(jkt), Presenter::Holder, Some(p)) if p != jkt => Err(Refused::OtherKey),
        (Bound::Jkt(_), _, Some(p)) => Ok(Some(p.to_owned())),
    }
}

/// ID-JAG redemption (ID-JAG §4.4 step 6, RFC 9449 §5): the `cnf.jkt` of the
/// access token. A bound ID-JAG is redeemed only with a proof by its key; a
/// bearer one is bound to the proof's key when a proof came.
pub fn redemption(assertion: Bound<'_>, proof: Option<&str>) -> Result<Option<String>, Refused> {
    match (assertion, proof) {
        (Bound::Unsupported, _) => Err(Refused::UnsupportedMethod),
        (Bound::No, proof) => Ok(proof.map(str::to_owned)),
        (Bound::Jkt(_), None) => Err(Refused::ProofRequired),
        (Bound::Jkt(jkt), Some(p)) if p != jkt => Err(Refused::OtherKey),
        (Bound::Jkt(jkt), Some(_)) => Ok(Some(jkt.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cnf_is_read_as_jkt_or_as_a_binding_we_cannot_verify() {
        use serde_json::json;
        assert_eq!(Bound::of(None), Bound::No);
        assert_eq!(Bound::of(Some(&json!(null))), Bound::No);
        let jkt = json!({"jkt": "abc"});
        assert_eq!(Bound::of(Some(&jkt)), Bound::Jkt("abc"));
        for other in [
            json!({"x5t#S256": "abc"}),
            json!({"jkt": "abc", "x5t#S256": "d"}),
            json!({"jkt": 7}),
            json!({"jkt": ""}),
            json!({}),
            json!("abc"),
        ] {
            assert_eq!(Bound::of(Some(&other)), Bound::Unsupported, "{other}");
        }
    }

    #[test]
    fn a_bearer_subject_is_bound_to_the_proof_if_one_came() {
        assert_eq!(exchange(Bound::No, Presenter::Holder, None), Ok(None));
        assert_eq!(
            exchange(Bound::No, Presenter::Holder, Some("k1")),
            Ok(Some("k1".into()))
        );
        assert_eq!(
            exchange(Bound::No, Presenter::Recipient, Some("k1")),
            Ok(Some("k1".into()))
        );
    }

    #[test]
    fn a_bound_subject_is_never_exchanged_without_a_proof() {
        for p in [Presenter::Holder, Presenter::Recipient] {
            assert_eq!(exchange(Bound::Jkt("k1"), p, None), Err(Refused::ProofRequired));
        }
    }

    #[test]
    fn its_holder_must_prove_the_same_key() {
        assert_eq!(
            exchange(Bound::Jkt("k1"), Presenter::Holder, Some("k1")),
            Ok(Some("k1".into()))
        );
        assert_eq!(
            exchange(Bound::Jkt("k1"), Presenter::Holder, Some("k2")),
            Err(Refused::OtherKey)
        );
    }

    #[test]
    fn the_service_it_was_issued_for_binds_the_next_token_to_its_own_key() {
        assert_eq!(
            exchange(Bound::Jkt("k1"), Presenter::Recipient, Some("svc")),
            Ok(Some("svc".into()))
        );
    }

    #[test]
    fn an_unverifiable_binding_is_refused_not_dropped() {
        assert_eq!(
            exchange(Bound::Unsupported, Presenter::Holder, Some("k")),
            Err(Refused::UnsupportedMethod)
        );
        assert_eq!(
            redemption(Bound::Unsupported, Some("k")),
            Err(Refused::UnsupportedMethod)
        );
    }

    #[test]
    fn a_bound_id_jag_is_redeemed_only_with_its_own_key() {
        assert_eq!(redemption(Bound::Jkt("k1"), Some("k1")), Ok(Some("k1".into())));
        assert_eq!(redemption(Bound::Jkt("k1"), Some("k2")), Err(Refused::OtherKey));
        assert_eq!(redemption(Bound::Jkt("k1"), None), Err(Refused::ProofRequired));
        assert_eq!(redemption(Bound::No, None), Ok(None));
        assert_eq!(redemption(Bound::No, Some("k2")), Ok(Some("k2".into())));
    }
}
