"""The controller runtime under the kopf wiring: informers filling one cache, a deduplicating work queue per kind,
workers that reconcile one key at a time while this replica holds the lease, and the manager that runs them."""
