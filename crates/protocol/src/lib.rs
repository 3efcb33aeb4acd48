//! natter-protocol
