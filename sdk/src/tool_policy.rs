//! `ToolPolicy`: may this principal call this tool?
//!
//! Owns: each tool's category and required scope, the set of categories an
//! agent in the `act` chain may call (the broker's `[agents] categories`,
//! specs/config.md), and the typed refusal naming the rule that refused.
//! Must never: allow a tool it does not know, let a missing `sub_profile`
//! lift the agent cap (`Actor::is_agent`), or do I/O: it is a pure
//! decision.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use crate::principal::Principal;

/// A tool's category: the same four names as the broker's scope catalog
/// (specs/config.md, `audiences.*.scopes`) and `POST /audit/events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Read,
    Write,
    Destructive,
    Admin,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Read => "read",
            Category::Write => "write",
            Category::Destructive => "destructive",
            Category::Admin => "admin",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not one of `read`, `write`, `destructive`, `admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("category must be read, write, destructive or admin")]
pub struct UnknownCategory;

impl FromStr for Category {
    type Err = UnknownCategory;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Category::Read),
            "write" => Ok(Category::Write),
            "destructive" => Ok(Category::Destructive),
            "admin" => Ok(Category::Admin),
            _ => Err(UnknownCategory),
        }
    }
}

/// What one tool declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRule {
    pub category: Category,
    /// The scope the token must carry; `None`: any valid token for this
    /// resource.
    pub scope: Option<String>,
}

/// Why a call was refused, naming the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The tool is not declared: deny by default.
    #[error("tool {tool} is not declared in the policy")]
    UnknownTool { tool: String },
    /// The token lacks the tool's scope: answer 403 `insufficient_scope`
    /// with this scope (RFC 6750 §3.1).
    #[error("tool {tool} needs scope {scope}")]
    MissingScope { tool: String, scope: String },
    /// An agent is in the `act` chain and the tool's category is not one
    /// agents may call. No scope would change that.
    #[error("tool {tool} is {category}, which agents may not call (agent {agent} in the chain)")]
    AgentCategory {
        tool: String,
        category: Category,
        /// The first agent found in the chain.
        agent: String,
    },
}

impl Refusal {
    /// The rule's machine name (`tool.unknown`, `tool.scope`,
    /// `tool.agent_category`), for logs and the audit summary.
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::UnknownTool { .. } => "tool.unknown",
            Refusal::MissingScope { .. } => "tool.scope",
            Refusal::AgentCategory { .. } => "tool.agent_category",
        }
    }

    /// The scope to name in an `insufficient_scope` challenge, when more
    /// scope would help.
    pub fn missing_scope(&self) -> Option<&str> {
        match self {
            Refusal::MissingScope { scope, .. } => Some(scope),
            _ => None,
        }
    }
}

/// The tools of one server and who may call them.
#[derive(Debug, Clone)]
pub struct ToolPolicy {
    tools: HashMap<String, ToolRule>,
    agent_categories: BTreeSet<Category>,
}

impl Default for ToolPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl ToolPolicy {
    /// No tools; agents may call `read` tools only.
    pub fn new() -> Self {
        Self {
            tools: HashMap::new(),
            agent_categories: [Category::Read].into(),
        }
    }

    /// Declare `name` as `category`, needing `scope` (when given).
    pub fn tool(mut self, name: impl Into<String>, category: Category, scope: Option<&str>) -> Self {
        self.tools.insert(
            name.into(),
            ToolRule {
                category,
                scope: scope.map(str::to_owned),
            },
        );
        self
    }

    /// The categories an agent anywhere in the chain may call (default
    /// `read`; set it like the broker's `[agents] categories`).
    pub fn agent_categories(mut self, categories: impl IntoIterator<Item = Category>) -> Self {
        self.agent_categories = categories.into_iter().collect();
        self
    }

    pub fn rule(&self, tool: &str) -> Option<&ToolRule> {
        self.tools.get(tool)
    }

    /// May `principal` call `tool`? Checked in order: the tool is declared;
    /// an agent in the chain is held to the agent categories (first, since
    /// no scope would lift that cap); the token carries the tool's scope.
    pub fn check(&self, tool: &str, principal: &Principal) -> Result<&ToolRule, Refusal> {
        let rule = self
            .tools
            .get(tool)
            .ok_or_else(|| Refusal::UnknownTool { tool: tool.to_owned() })?;
        if !self.agent_categories.contains(&rule.category)
            && let Some(agent) = principal.act.iter().find(|a| a.is_agent())
        {
            return Err(Refusal::AgentCategory {
                tool: tool.to_owned(),
                category: rule.category,
                agent: agent.sub.clone(),
            });
        }
        if let Some(scope) = &rule.scope
            && !principal.has_scope(scope)
        {
            return Err(Refusal::MissingScope {
                tool: tool.to_owned(),
                scope: scope.clone(),
            });
        }
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::Actor;
    use crate::principal;

    fn policy() -> ToolPolicy {
        ToolPolicy::new()
            .tool("search_logs", Category::Read, Some("logs.read"))
            .tool("purge_logs", Category::Destructive, Some("logs.purge"))
            .tool("annotate", Category::Write, Some("logs.write"))
    }

    fn with(scopes: &[&str], act: &[(&str, Option<&str>)]) -> Principal {
        let mut p = principal::example();
        p.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        p.act = act
            .iter()
            .map(|(sub, profile)| Actor {
                sub: (*sub).into(),
                iss: None,
                sub_profile: profile.map(str::to_owned),
            })
            .collect();
        p
    }

    const AGENT: (&str, Option<&str>) = ("agent:triage", Some("ai_agent"));
    const SERVICE: (&str, Option<&str>) = ("mcp:logs", Some("service"));

    #[test]
    fn an_agent_chain_may_read() {
        let p = with(&["logs.read"], &[SERVICE, AGENT]);
        assert_eq!(policy().check("search_logs", &p).unwrap().category, Category::Read);
    }

    #[test]
    fn an_agent_anywhere_in_the_chain_may_not_destroy_even_with_the_scope() {
        let p = with(&["logs.purge"], &[SERVICE, AGENT]);
        let r = policy().check("purge_logs", &p).unwrap_err();
        assert_eq!(
            r,
            Refusal::AgentCategory {
                tool: "purge_logs".into(),
                category: Category::Destructive,
                agent: "agent:triage".into()
            }
        );
        assert_eq!(r.rule(), "tool.agent_category");
        assert_eq!(r.missing_scope(), None, "no scope would help");
    }

    #[test]
    fn an_actor_without_a_profile_is_capped_as_an_agent() {
        let p = with(&["logs.purge"], &[("someone", None)]);
        assert!(matches!(
            policy().check("purge_logs", &p),
            Err(Refusal::AgentCategory { .. })
        ));
    }

    #[test]
    fn a_human_or_a_service_chain_is_held_to_scopes_only() {
        assert!(policy().check("purge_logs", &with(&["logs.purge"], &[])).is_ok());
        assert!(policy().check("purge_logs", &with(&["logs.purge"], &[SERVICE])).is_ok());
    }

    #[test]
    fn a_missing_scope_names_the_scope() {
        let r = policy().check("annotate", &with(&["logs.read"], &[])).unwrap_err();
        assert_eq!(r.missing_scope(), Some("logs.write"));
        assert_eq!(r.rule(), "tool.scope");
    }

    #[test]
    fn the_agent_categories_are_configurable() {
        let p = with(&["logs.write"], &[AGENT]);
        assert!(matches!(
            policy().check("annotate", &p),
            Err(Refusal::AgentCategory { .. })
        ));
        let broker_like = policy().agent_categories([Category::Read, Category::Write]);
        assert!(broker_like.check("annotate", &p).is_ok());
    }

    #[test]
    fn an_undeclared_tool_is_refused() {
        let r = policy().check("rm_rf", &with(&["logs.purge"], &[])).unwrap_err();
        assert_eq!(r.rule(), "tool.unknown");
    }

    #[test]
    fn categories_read_as_the_broker_writes_them() {
        for c in [Category::Read, Category::Write, Category::Destructive, Category::Admin] {
            assert_eq!(c.as_str().parse::<Category>(), Ok(c));
        }
        assert_eq!("dangerous".parse::<Category>(), Err(UnknownCategory));
    }
}
