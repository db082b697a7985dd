"""TrainingJob: gang-scheduled worker pods, honest retries, deadlines and promotion to serving.

Pure modules: `rendezvous` (names and env of each rank), `failures` (the failure taxonomy), `render` (the worker
pods and the headless Service), `lifecycle` (the state machine: phase, attempts, status, events), `promotion`
(the merge patch to a ModelDeployment). `reconcile` is the only module that does I/O.
"""
