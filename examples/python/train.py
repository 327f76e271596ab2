"""Trains a real scikit-learn classifier on the breast-cancer data set that ships inside
scikit-learn (no download), logging its params and a metric curve per epoch with the mlops SDK,
storing the model as a declared output and registering it as model `python-example`.

    /usr/bin/python3 examples/python/train.py [--epochs N] [--lr X]

It is deterministic (fixed seeds), so `mlops reproduce RUN` rebuilds the same model bit for bit
and the same metrics. Params also come from MLOPS_PARAM_EPOCHS / MLOPS_PARAM_LR (mlops run -p).
"""
import argparse
import os
import pickle

from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import mlops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=int(os.environ.get("MLOPS_PARAM_EPOCHS", 30)))
    parser.add_argument("--lr", type=float, default=float(os.environ.get("MLOPS_PARAM_LR", 0.01)))
    parser.add_argument("--model", default="python-example", help="registered model name")
    args = parser.parse_args()

    with mlops.start_run(experiment="python-example", params={"epochs": args.epochs,
                                                               "lr": args.lr},
                         outputs=["model.pkl"]) as run:
        features, labels = load_breast_cancer(return_X_y=True)
        x_train, x_test, y_train, y_test = train_test_split(features, labels, test_size=0.25,
                                                            random_state=0, stratify=labels)
        scaler = StandardScaler().fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
        model = SGDClassifier(loss="log_loss", learning_rate="constant", eta0=args.lr,
                              random_state=0)
        for epoch in range(args.epochs):
            model.partial_fit(x_train, y_train, classes=[0, 1])
            run.log_metrics({
                "train_loss": log_loss(y_train, model.predict_proba(x_train)),
                "val_loss": log_loss(y_test, model.predict_proba(x_test)),
                "val_accuracy": model.score(x_test, y_test),
            }, step=epoch)
        with open("model.pkl", "wb") as f:
            pickle.dump((scaler, model), f, protocol=4)
        print(f"run {run.id}: val_accuracy {model.score(x_test, y_test):.4f}")
    # A reproduction (mlops reproduce) checks the model; it does not register another version.
    if "mlops.reproduction_of" not in run.info().tags:
        version = mlops.models.register(run, "model.pkl", args.model)
        print(f"registered {args.model} version {version.version}")


if __name__ == "__main__":
    main()
