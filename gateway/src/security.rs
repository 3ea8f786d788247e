//! Service accounts, groups and ACLs: the security resources of the admin API.
