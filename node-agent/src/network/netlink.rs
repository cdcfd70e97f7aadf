//! Bridge mode through netlink.
