"""Kopf wiring only: operator settings and, per kind, handlers that call the controllers' pipelines."""

from __future__ import annotations

import kopf



@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:

    # every write with our field manager so server-side-apply ownership stays readable.
    settings.persistence.finalizer = "mlops.dev/finalizer"
    settings.posting.level = 20  # INFO and above become Kubernetes events
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    settings.peering.mandatory = False
