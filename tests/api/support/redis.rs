//! (being written): a redis-server per test binary on a free port.
