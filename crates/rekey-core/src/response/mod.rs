//! Breach response: incidents (the scope of a theft and its containment) and the rotation
//! campaigns that eradicate it. Built on the kernel and the connectors; nothing below depends on
//! it (see docs/architecture.md for why it stays a module of the core).

pub mod campaigns;
pub mod incidents;
pub mod share;
