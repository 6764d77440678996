//! dataplane: kernel drivers for WireGuard, nftables and routes (stub; see issue 3).
