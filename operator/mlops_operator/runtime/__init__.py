"""The controller runtime under the kopf wiring: a deduplicating work queue per kind, workers that reconcile one
key at a time, and the informer caches (kopf indices) the reconcilers read instead of the API server."""
