//! A transaction's audit records as an auditor reads them: the lineage tree
//! (which token each hop was exchanged from) and per-transaction summaries.
//!
//! Owns: the rule that links records — a record hangs under the record that
//! issued the token it was about (`parent_jti` → `issued_jti`): the next
//! hops exchanged from a token, the denials of such exchanges, the tool
//! calls made with it, its introspections and revocations. Pure functions
//! over records.
//! Must never: do I/O, or trust a link that points forward: a parent is
//! always recorded before its child, so a forged `jti` cycle cannot loop.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::audit::{AuditRecord, Decision};

/// Deeper lineages are cut here and the rest hang at the root: a tree an
/// auditor can read, and a response no client can make recurse without end.
pub const MAX_TREE_DEPTH: usize = 64;

/// One record in the tree, by its id, with the records under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceNode {
    pub id: String,
    pub children: Vec<TraceNode>,
}

/// The lineage of `records` (in the order they were recorded): roots are
/// the records whose `parent_jti` names no token issued earlier in them (the
/// first hop from the user's ID token, or a lone denial), children in order.
pub fn lineage(records: &[AuditRecord]) -> Vec<TraceNode> {
    // The record that issued each jti, first one wins (a jti is unique; a
    // forged duplicate cannot take over an earlier token's children).
    let mut issuer_of: HashMap<&str, usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        if r.decision == Decision::Granted
            && let Some(jti) = r.issued_jti.as_deref()
        {
            issuer_of.entry(jti).or_insert(i);
        }
    }
    let mut parent: Vec<Option<usize>> = vec![None; records.len()];
    let mut depth = vec![0usize; records.len()];
    for (i, r) in records.iter().enumerate() {
        let p = r
            .parent_jti
            .as_deref()
            .and_then(|j| issuer_of.get(j).copied())
            .filter(|p| *p < i && depth[*p] < MAX_TREE_DEPTH);
        if let Some(p) = p {
            parent[i] = Some(p);
            depth[i] = depth[p] + 1;
        }
    }
    // Built from the last record back: every child comes after its parent,
    // so its node is complete when the parent takes it.
    let mut built: Vec<Option<TraceNode>> = vec![None; records.len()];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); records.len()];
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            children[*p].push(i);
        }
    }
    for i in (0..records.len()).rev() {
        let kids = children[i].iter().filter_map(|c| built[*c].take()).collect();
        built[i] = Some(TraceNode {
            id: records[i].id.clone(),
            children: kids,
        });
    }
    (0..records.len())
        .filter(|i| parent[*i].is_none())
        .filter_map(|i| built[i].take())
        .collect()
}

/// One transaction at a glance (`audit search`, the page's search).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxnSummary {
    pub txn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_iss: Option<String>,
    /// RFC 3339 times of its first and last record.
    pub first: String,
    pub last: String,
    pub records: usize,
    pub denied: usize,
    pub tool_calls: usize,
    /// The clients that acted in it, sorted.
    pub clients: BTreeSet<String>,
}

/// The transactions `records` belong to, in the order each first appears.
/// Records without a `txn` (a denial before the chain was known) are left
/// out: they have no transaction to list.
pub fn summarise(records: &[AuditRecord]) -> Vec<TxnSummary> {
    let mut order: Vec<String> = Vec::new();
    let mut by_txn: BTreeMap<String, TxnSummary> = BTreeMap::new();
    for r in records {
        let Some(txn) = r.txn.as_deref() else { continue };
        let s = by_txn.entry(txn.to_owned()).or_insert_with(|| {
            order.push(txn.to_owned());
            TxnSummary {
                txn: txn.to_owned(),
                sub: None,
                sub_iss: None,
                first: r.time.clone(),
                last: r.time.clone(),
                records: 0,
                denied: 0,
                tool_calls: 0,
                clients: BTreeSet::new(),
            }
        });
        s.records += 1;
        s.denied += usize::from(r.decision == Decision::Denied);
        s.tool_calls += usize::from(r.event.is_some());
        if s.sub.is_none() {
            s.sub.clone_from(&r.sub);
            s.sub_iss.clone_from(&r.sub_iss);
        }
        // RFC 3339 UTC text of one format orders as time does.
        if r.time < s.first {
            s.first.clone_from(&r.time);
        }
        if r.time > s.last {
            s.last.clone_from(&r.time);
        }
        if let Some(c) = &r.client_id {
            s.clients.insert(c.clone());
        }
    }
    order.into_iter().filter_map(|t| by_txn.remove(&t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, parent: Option<&str>, issued: Option<&str>, granted: bool) -> AuditRecord {
        AuditRecord {
            id: id.into(),
            time: "2026-11-30T10:00:00Z".into(),
            txn: Some("t1".into()),
            parent_jti: parent.map(Into::into),
            issued_jti: issued.map(Into::into),
            decision: if granted { Decision::Granted } else { Decision::Denied },
            ..AuditRecord::default()
        }
    }

    fn shape(nodes: &[TraceNode]) -> String {
        nodes
            .iter()
            .map(|n| {
                if n.children.is_empty() {
                    n.id.clone()
                } else {
                    format!("{}({})", n.id, shape(&n.children))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn each_hop_hangs_under_the_hop_whose_token_it_was_exchanged_from() {
        let records = [
            rec("hop1", Some("id-token"), Some("j1"), true),
            rec("hop2", Some("j1"), Some("j2"), true),
            rec("denied", Some("j1"), None, false),
            rec("tool", Some("j2"), None, true),
            rec("hop3", Some("j2"), Some("j3"), true),
        ];
        assert_eq!(shape(&lineage(&records)), "hop1(hop2(tool hop3) denied)");
    }

    #[test]
    fn a_denied_record_issues_nothing_so_nothing_hangs_under_it() {
        let mut denied = rec("denied", Some("x"), Some("j1"), false);
        denied.decision = Decision::Denied;
        let records = [denied, rec("later", Some("j1"), None, true)];
        assert_eq!(shape(&lineage(&records)), "denied later");
    }

    #[test]
    fn a_forward_or_circular_link_is_never_followed() {
        // a says it came from b's token and b from a's: recorded order wins.
        let records = [
            rec("a", Some("jb"), Some("ja"), true),
            rec("b", Some("ja"), Some("jb"), true),
        ];
        assert_eq!(shape(&lineage(&records)), "a(b)");
        let looped = [rec("self", Some("js"), Some("js"), true)];
        assert_eq!(shape(&lineage(&looped)), "self");
    }

    #[test]
    fn a_lineage_deeper_than_the_cap_continues_at_the_root() {
        let records: Vec<AuditRecord> = (0..=MAX_TREE_DEPTH + 1)
            .map(|i| {
                let parent = (i > 0).then(|| format!("j{}", i - 1));
                rec(&format!("r{i}"), parent.as_deref(), Some(&format!("j{i}")), true)
            })
            .collect();
        let roots = lineage(&records);
        assert_eq!(roots.len(), 2, "the record past the cap starts a new root");
        assert_eq!(roots[1].id, format!("r{}", MAX_TREE_DEPTH + 1));
    }

    #[test]
    fn transactions_are_summarised_in_order_of_first_appearance() {
        let mut a = rec("a", None, Some("j1"), true);
        a.client_id = Some("triage-agent".into());
        a.sub = Some("alice".into());
        let mut b = rec("b", Some("j1"), None, false);
        b.client_id = Some("mcp-logs".into());
        b.time = "2026-11-30T10:00:05Z".into();
        let mut tool = rec("c", Some("j1"), None, true);
        tool.event = Some(crate::audit::ToolEvent {
            tool: "search_logs".into(),
            category: crate::policy::Category::Read,
            outcome: crate::audit::ToolOutcome::Succeeded,
            at: "2026-11-30T10:00:06Z".into(),
            args_sha256: "0".repeat(64),
            summary: None,
            call_id: None,
        });
        let mut other = rec("d", None, None, true);
        other.txn = Some("t2".into());
        let mut untracked = rec("e", None, None, false);
        untracked.txn = None;
        let s = summarise(&[a, b, tool, other, untracked]);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].txn, "t1");
        assert_eq!((s[0].records, s[0].denied, s[0].tool_calls), (3, 1, 1));
        assert_eq!(s[0].sub.as_deref(), Some("alice"));
        assert_eq!(s[0].last, "2026-11-30T10:00:05Z", "the latest time, whatever the order");
        assert_eq!(
            s[0].clients.iter().cloned().collect::<Vec<_>>(),
            ["mcp-logs", "triage-agent"]
        );
        assert_eq!(s[1].txn, "t2");
    }
}
