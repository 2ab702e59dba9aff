//! Who hears whom (docs/design.md §3), as one pure function.

use super::types::{LegRole, SessionMode};

/// Whether `listener` hears `speaker`, two legs of one call (docs/design.md §3). `same_leg`:
/// both are the same leg; nobody hears their own voice back.
///
/// Session modes are named by who hears the supervisor; the parties hear each other:
///
/// | speaker            | heard by                                  |
/// |--------------------|-------------------------------------------|
/// | customer           | the agent, every supervisor               |
/// | agent              | the customer, every supervisor            |
/// | monitor supervisor | nobody                                    |
/// | coach supervisor   | the agent, the other supervisors          |
/// | barge supervisor   | everybody else                            |
///
/// A supervisor so hears the other supervisors whose voice reaches the agent. A second
/// customer (or agent) leg does not hear the first: only the first of each takes part.
pub(super) fn hears(listener: LegRole, speaker: LegRole, same_leg: bool) -> bool {
    use LegRole::{Agent, Customer, Supervisor};
    if same_leg {
        return false;
    }
    match speaker {
        Customer => listener != Customer,
        Agent => listener != Agent,
        Supervisor(SessionMode::Monitor) => false,
        Supervisor(SessionMode::Coach) => listener != Customer,
        Supervisor(SessionMode::Barge) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: LegRole = LegRole::Customer;
    const A: LegRole = LegRole::Agent;
    const MON: LegRole = LegRole::Supervisor(SessionMode::Monitor);
    const COACH: LegRole = LegRole::Supervisor(SessionMode::Coach);
    const BARGE: LegRole = LegRole::Supervisor(SessionMode::Barge);
    const ROLES: [LegRole; 5] = [C, A, MON, COACH, BARGE];

    /// The table of docs/design.md §3, one row per mode: who the supervisor, the agent and
    /// the customer hear among the customer, the agent and that supervisor (`None`: no
    /// session).
    #[test]
    fn design_table_rows() {
        #[allow(clippy::type_complexity)]
        let rows: [(Option<LegRole>, &[LegRole], &[LegRole], &[LegRole]); 4] = [
            // mode,       supervisor hears, agent hears,  customer hears
            (None, &[], &[C], &[A]),
            (Some(MON), &[C, A], &[C], &[A]),
            (Some(COACH), &[C, A], &[C, COACH], &[A]),
            (Some(BARGE), &[C, A], &[C, BARGE], &[A, BARGE]),
        ];
        for (sup, sup_hears, agent_hears, cust_hears) in rows {
            let legs: Vec<LegRole> = [C, A].into_iter().chain(sup).collect();
            let heard_by = |listener: LegRole| -> Vec<LegRole> {
                legs.iter()
                    .copied()
                    .filter(|&s| hears(listener, s, s == listener))
                    .collect()
            };
            assert_eq!(heard_by(A), agent_hears, "agent, mode {sup:?}");
            assert_eq!(heard_by(C), cust_hears, "customer, mode {sup:?}");
            if let Some(s) = sup {
                assert_eq!(heard_by(s), sup_hears, "supervisor, mode {sup:?}");
            }
        }
    }

    /// Several supervisors at once, each in its own mode: a supervisor hears the others whose
    /// voice reaches the agent (coach, barge), never a monitor.
    #[test]
    fn supervisors_hear_the_supervisors_the_agent_hears() {
        for listener in [MON, COACH, BARGE] {
            for (speaker, heard) in [(MON, false), (COACH, true), (BARGE, true)] {
                assert_eq!(
                    hears(listener, speaker, false),
                    heard,
                    "{listener:?} hearing another supervisor in {speaker:?}"
                );
                assert_eq!(hears(A, speaker, false), heard, "as the agent does");
            }
        }
    }

    /// Every ordered pair of two different legs, and nobody hears themselves.
    #[test]
    fn every_pair() {
        // listener, then whether it hears C, A, MON, COACH, BARGE (another leg of that role).
        let table: [(LegRole, [bool; 5]); 5] = [
            (C, [false, true, false, false, true]),
            (A, [true, false, false, true, true]),
            (MON, [true, true, false, true, true]),
            (COACH, [true, true, false, true, true]),
            (BARGE, [true, true, false, true, true]),
        ];
        for (listener, row) in table {
            for (speaker, heard) in ROLES.into_iter().zip(row) {
                assert_eq!(
                    hears(listener, speaker, false),
                    heard,
                    "{listener:?} <- {speaker:?}"
                );
                assert!(!hears(listener, speaker, true), "one leg hearing itself");
            }
        }
    }
}
