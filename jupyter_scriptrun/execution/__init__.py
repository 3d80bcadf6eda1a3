"""Running one attempt on this host: processes (fresh or forked warm), their limits and
kill, the ledger of their sessions, and the attempt from claim to record."""
