//! Policy queries on a parsed configuration: users, trunks, routes, who may monitor whom.

use std::net::SocketAddr;

use super::model::*;

impl Config {
    /// The user with extension `ext`.
    pub fn user(&self, ext: &str) -> Option<&User> {
        self.users.iter().find(|u| u.extension == ext)
    }

    /// The trunk whose address is exactly `src` (IP and port); traffic from any other port of
    /// the same host is not trusted.
    pub fn trunk_for_source(&self, src: SocketAddr) -> Option<&Trunk> {
        // An IPv4 peer seen on a dual-stack socket shows up as ::ffff:a.b.c.d; compare canonical forms.
        let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        let src = canon(src);
        self.trunks.iter().find(|t| canon(t.address) == src)
    }

    /// The trunk called `name`.
    pub fn trunk(&self, name: &str) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.name == name)
    }

    /// Routes a dialled number: the first route whose prefix matches, skipping a
    /// [`RouteTarget::Users`] route when the stripped number is not a local user. Returns the
    /// route and the number after stripping.
    pub fn route(&self, dialled: &str) -> Option<(&Route, String)> {
        self.routes.iter().find_map(|r| {
            if !dialled.starts_with(r.prefix.as_str()) {
                return None;
            }
            // `strip` counts characters; validation keeps it within the (ASCII) prefix, so this
            // never cuts into a multi-byte character, but stay safe for any input.
            let cut = dialled
                .char_indices()
                .nth(r.strip)
                .map_or(dialled.len(), |(i, _)| i);
            let number = dialled.get(cut..).unwrap_or_default().to_owned();
            match &r.target {
                RouteTarget::Users if self.user(&number).is_none() => None,
                _ => Some((r, number)),
            }
        })
    }

    /// Whether any user's password is the lab default `"lab" + extension` (the server warns).
    pub fn uses_lab_passwords(&self) -> bool {
        self.users
            .iter()
            .any(|u| u.password == format!("lab{}", u.extension))
    }

    /// Who hears notification tones when `supervisor` attaches to `agent` in `mode`: the first
    /// matching rule's `notify`, else `[compliance] notify`.
    pub fn notify_for(&self, supervisor: &User, agent: &User, mode: Mode) -> Notify {
        self.policy
            .iter()
            .find(|rule| {
                rule.modes.contains(&mode)
                    && supervisor.in_group(&rule.supervisors)
                    && agent.in_group(&rule.agents)
            })
            .and_then(|r| r.notify)
            .unwrap_or(self.compliance.notify)
    }

    /// Whether `supervisor` may use `mode` on `agent` by policy: the supervisor must hold the
    /// supervisor role, must not be the agent, and some rule must name a group of each with
    /// `mode`. Built-In-Bridge and privacy are separate refusals and are not checked here.
    pub fn may(&self, supervisor: &User, agent: &User, mode: Mode) -> bool {
        supervisor.has_role(Role::Supervisor)
            && supervisor.extension != agent.extension
            && self.policy.iter().any(|rule| {
                rule.modes.contains(&mode)
                    && supervisor.in_group(&rule.supervisors)
                    && agent.in_group(&rule.agents)
            })
    }
}
