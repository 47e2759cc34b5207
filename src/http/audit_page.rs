//! The auditor's page: one self-contained HTML document (`audit_page.html`,
//! inline CSS and JS, SVG drawn by the script) that draws a transaction as a
//! picture, searches transactions by user and time, and shows each record.
//!
//! Owns: the template, embedding the page's data in it as JSON that no
//! record content can break out of, the per-response nonce in its `<script>`
//! and `<style>`, and the Content-Security-Policy that goes with them.
//! Must never: put record text into the page as markup (the JSON is escaped
//! here, the script renders with `textContent` only); reference anything
//! outside the document (no URL, font or CDN: the policy allows none);
//! decide who may see the page or read the store (that is the caller's).

/// The page. Placeholders: `{{NONCE}}` (on the `<script>` and the
/// `<style>`) and `{{DATA}}` (the body of the `audit-data` JSON element).
const TEMPLATE: &str = include_str!("audit_page.html");

/// The page with `data` embedded, its script and style carrying `nonce`
/// (the same value given to [`content_security_policy`]).
///
/// `data` is what the script draws: `{"view": "trace" | "search" | "home" |
/// "error", …}` (the shapes are in `audit_page.html`'s script).
pub fn render(data: &serde_json::Value, nonce: &str) -> String {
    let nonce = nonce_chars(nonce);
    let json = escape_json_for_script(&data.to_string());
    // The nonce first: it holds only base64 characters, so it cannot carry a
    // placeholder, and record text is never searched for one.
    TEMPLATE.replace("{{NONCE}}", &nonce).replacen("{{DATA}}", &json, 1)
}

/// The `Content-Security-Policy` header value for a page rendered with
/// `nonce`: nothing loads from anywhere, and only the page's own script and
/// style (carrying the nonce) run.
pub fn content_security_policy(nonce: &str) -> String {
    let nonce = nonce_chars(nonce);
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src data:; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
}

/// A nonce as CSP's `base64-value` grammar allows it (letters, digits, `+`,
/// `/`, `-`, `_`, trailing `=`): anything else is dropped, so a nonce can
/// never close the attribute or the header directive it sits in.
fn nonce_chars(nonce: &str) -> String {
    nonce
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '-' | '_' | '='))
        .collect()
}

/// serde_json's output made safe inside `<script type="application/json">`:
/// `<`, `>` and `&` can appear only inside JSON strings, where `\u003c` means
/// the same character, so `</script>` and `<!--` can never occur; U+2028 and
/// U+2029 are escaped too, as they end a line in older JavaScript parsers.
fn escape_json_for_script(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The text between `<script type="application/json" id="audit-data">`
    /// and the first `</script>` after it.
    fn embedded(page: &str) -> &str {
        let open = "<script type=\"application/json\" id=\"audit-data\">";
        let start = page.find(open).expect("data element") + open.len();
        let len = page[start..].find("</script>").expect("data element closed");
        &page[start..start + len]
    }

    #[test]
    fn record_text_stays_inside_the_json() {
        let evil = "</script><script>alert(1)</script><!-- & \u{2028}\u{2029} <img src=x onerror=alert(1)>";
        let data = json!({"view": "trace", "trace": {"txn": "t", "records": [
            {"id": "r1", "user_agent": evil, "event": {"summary": evil}}
        ], "tree": [{"id": "r1", "children": []}]}});
        let page = render(&data, "abc123");
        let inside = embedded(&page);
        for bad in ["<", ">", "&", "\u{2028}", "\u{2029}"] {
            assert!(!inside.contains(bad), "{bad:?} unescaped in {inside}");
        }
        // The same data comes back out: nothing was lost, only escaped.
        let back: serde_json::Value = serde_json::from_str(inside).expect("still JSON");
        assert_eq!(back, data);
        assert_eq!(back["trace"]["records"][0]["user_agent"], evil);
        // Exactly two script elements: the data and the page's own.
        assert_eq!(page.matches("<script").count(), 2);
        assert!(!page.contains("alert(1)</script>"));
    }

    #[test]
    fn the_nonce_lands_on_the_script_and_the_style_and_in_the_policy() {
        let page = render(&json!({"view": "home"}), "r4nd0m+/Nonce_-==");
        assert!(page.contains("<script nonce=\"r4nd0m+/Nonce_-==\">"), "script nonce");
        assert!(page.contains("<style nonce=\"r4nd0m+/Nonce_-==\">"), "style nonce");
        assert!(!page.contains("{{"), "a placeholder left in the page");
        assert_eq!(
            content_security_policy("r4nd0m+/Nonce_-=="),
            "default-src 'none'; script-src 'nonce-r4nd0m+/Nonce_-=='; style-src 'nonce-r4nd0m+/Nonce_-=='; \
             img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        );
    }

    #[test]
    fn a_nonce_cannot_break_out_of_its_attribute_or_directive() {
        let nasty = "a\"><script>x</script>'; script-src *";
        let page = render(&json!({"view": "home"}), nasty);
        assert!(page.contains("<script nonce=\"ascriptx/scriptscript-src\">"));
        assert_eq!(page.matches("<script").count(), 2);
        let csp = content_security_policy(nasty);
        assert!(csp.starts_with("default-src 'none'; script-src 'nonce-ascriptx/scriptscript-src'; "));
    }

    #[test]
    fn every_script_and_style_element_carries_the_nonce() {
        // Anything without it would be blocked by the policy; the data element
        // is JSON, which the policy does not execute.
        let page = render(&json!({"view": "home"}), "n0nce");
        assert_eq!(
            page.matches("<script").count(),
            page.matches("<script nonce=\"n0nce\">").count() + 1
        );
        assert_eq!(
            page.matches("<style").count(),
            page.matches("<style nonce=\"n0nce\">").count()
        );
        assert_eq!(TEMPLATE.matches("{{DATA}}").count(), 1);
    }

    #[test]
    fn the_template_loads_nothing_and_writes_no_markup() {
        // The only URL is the SVG namespace, an identifier the script passes
        // to createElementNS, never fetched.
        let without_ns = TEMPLATE.replace("http://www.w3.org/2000/svg", "");
        for url in ["http://", "https://", "//cdn", "@import", "url(", "src="] {
            assert!(!without_ns.contains(url), "the template references {url:?}");
        }
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setAttribute('on",
            " onclick=",
            " onload=",
            " style=\"",
        ] {
            assert!(!TEMPLATE.contains(sink), "the template uses {sink:?}");
        }
    }
}
