"""ModelDeployment: serving a model behind a Service, with truthful status and canary rollouts.

Pipeline (one module each): runtimes (presets) -> canary (the rollout plan, pure) -> render (children, pure)
-> status (pure) -> reconcile (the only module with I/O).
"""
