"""The one error type of the local cluster: its message names the cause and, where there is one, the log file."""


class ClusterError(RuntimeError):
    pass
