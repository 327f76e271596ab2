"""mlops: track runs, version data and models, run pipelines and watch models from Python.

    import mlops
    with mlops.start_run(experiment="churn", params={"lr": 0.1}) as run:
        for epoch in range(10):
            run.log_metric("loss", train_one_epoch(), step=epoch)

Logging is asynchronous and lossless (docs/python.md): a log call appends to a buffer; one
background thread sends, spools to disk while the server is away, and replays exactly once.
"""
from .errors import (Aborted, AlreadyExists, Cancelled, DataLoss, DeadlineExceeded,
                     FailedPrecondition, Internal, InvalidArgument, MlopsError, NotFound,
                     OutOfRange, PermissionDenied, ResourceExhausted, Unauthenticated,
                     Unavailable, Unimplemented, Unknown)
from .tracking import (Run, Terminated, active_run, end_run, flush, log_artifact, log_metric,
                       log_metrics, log_param, log_params, set_server, set_tag, set_tags,
                       start_run)
from . import data, models, monitoring, pipelines  # noqa: E402
from ._lineage import lineage  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Aborted", "AlreadyExists", "Cancelled", "DataLoss", "DeadlineExceeded", "FailedPrecondition",
    "Internal", "InvalidArgument", "MlopsError", "NotFound", "OutOfRange", "PermissionDenied",
    "ResourceExhausted", "Unauthenticated", "Unavailable", "Unimplemented", "Unknown", "Run",
    "Terminated", "active_run", "end_run", "flush", "log_artifact", "log_metric", "log_metrics",
    "log_param", "log_params", "set_server", "set_tag", "set_tags", "start_run", "data", "models",
    "monitoring", "pipelines", "lineage",
]
