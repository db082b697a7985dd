"""DriftMonitor: the drift runner (data -> statistics -> status.lastRun) and the controller (CronJob, runner
permissions, and the reactions to each new result: conditions, metrics, events, alerts, retraining)."""
