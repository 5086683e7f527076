//! The age-75 transfer seen from the 国保 side (R8): which flagged members are about to move to
//! the union (the hand-off extract) and which moved without their flags (the "missed" check).
//! The union's side of the transfer (R3 carry, R13 inquiries) is applied inside the run, in
//! [`crate::engine`].

pub mod extract;
