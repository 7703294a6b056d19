//! STIX 2.1, as much as Rekey reads from threat feeds ([`pattern`], [`indicators`]) and writes
//! when an incident is shared ([`bundle`]).

pub mod bundle;
pub mod indicators;
pub mod pattern;
