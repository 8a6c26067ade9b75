//! The start of virtual time for unit tests of the sans-IO cores. `src/sip` must not read the
//! clock (`make sans-io` greps for it), so its tests take their first instant from here and
//! move it forward by hand.

use std::time::Instant;

/// Any instant will do: tests only add durations to it.
pub fn t0() -> Instant {
    Instant::now()
}
