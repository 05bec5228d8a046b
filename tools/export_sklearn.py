#!/usr/bin/env python3
"""Export scikit-learn models to the JSON that `dragonfly-mle model load FILE KEY` reads.

Supported: LogisticRegression (binary), LinearRegression, DecisionTreeClassifier/Regressor,
RandomForestClassifier/Regressor, KMeans.

As a library:
    from export_sklearn import export
    json.dump(export(model, feature_names=["len", "entropy"]), open("model.json", "w"))

As a demo (trains a small DGA-style random forest and logistic regression on synthetic data):
    python3 tools/export_sklearn.py --demo OUTDIR
writes OUTDIR/forest.json, OUTDIR/logreg.json, OUTDIR/kmeans.json and OUTDIR/samples.json
(held-out samples with scikit-learn's own predictions, to check the engine against).
"""
import json
import sys


def _tree(t, classification):
    value = t.value[:, 0, :]
    if classification:
        # class counts per node (recent scikit-learn stores fractions: scale them back)
        counts = value * t.weighted_n_node_samples[:, None] if value.max() <= 1.0 else value
        value = counts.round().astype(int).tolist()
    else:
        value = value[:, :1].tolist()
    return {
        "children_left": t.children_left.tolist(),
        "children_right": t.children_right.tolist(),
        "feature": t.feature.tolist(),
        "threshold": t.threshold.tolist(),
        "value": value,
    }


def export(model, feature_names=None):
    """The JSON-ready dict for one fitted model."""
    name = type(model).__name__
    names = list(feature_names) if feature_names is not None else []
    if name == "LogisticRegression":
        if model.coef_.shape[0] != 1:
            raise ValueError("only binary logistic regression maps onto ML.LOGREG")
        return {"type": "logistic_regression", "intercept": float(model.intercept_[0]),
                "coefficients": model.coef_[0].tolist()}
    if name == "LinearRegression":
        coef = model.coef_.ravel()
        return {"type": "linear_regression", "intercept": float(model.intercept_),
                "coefficients": coef.tolist()}
    if name == "KMeans":
        return {"type": "kmeans", "centers": model.cluster_centers_.tolist()}
    if name in ("DecisionTreeClassifier", "DecisionTreeRegressor"):
        cls = name.endswith("Classifier")
        return {"type": "decision_tree", "mode": "classification" if cls else "regression",
                "feature_names": names, "trees": [_tree(model.tree_, cls)]}
    if name in ("RandomForestClassifier", "RandomForestRegressor"):
        cls = name.endswith("Classifier")
        return {"type": "random_forest", "mode": "classification" if cls else "regression",
                "feature_names": names,
                "trees": [_tree(e.tree_, cls) for e in model.estimators_]}
    raise ValueError(f"cannot export {name}")


def demo(outdir):
    import os
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    n = 2000
    # two lexical features of a domain label: length and character entropy
    benign = np.column_stack([rng.normal(8, 2.5, n), rng.normal(2.6, 0.3, n)])
    dga = np.column_stack([rng.normal(16, 3, n), rng.normal(3.6, 0.25, n)])
    x = np.vstack([benign, dga]).round(3)
    y = np.array([0] * n + [1] * n)
    idx = rng.permutation(len(y))
    x, y = x[idx], y[idx]
    train, test = slice(0, 3000), slice(3000, None)
    names = ["len", "entropy"]
    forest = RandomForestClassifier(n_estimators=5, max_depth=6, random_state=1).fit(x[train], y[train])
    logreg = LogisticRegression().fit(x[train], y[train])
    kmeans = KMeans(n_clusters=3, n_init=3, random_state=1).fit(x[train])
    os.makedirs(outdir, exist_ok=True)
    for fname, m in (("forest.json", forest), ("logreg.json", logreg), ("kmeans.json", kmeans)):
        with open(os.path.join(outdir, fname), "w") as f:
            json.dump(export(m, names), f)
    samples = [{"features": row.tolist(), "label": int(label),
                "forest": int(forest.predict(row[None])[0]),
                "logreg_proba": float(logreg.predict_proba(row[None])[0, 1]),
                "kmeans": int(kmeans.predict(row[None])[0])}
               for row, label in zip(x[test][:200], y[test][:200])]
    with open(os.path.join(outdir, "samples.json"), "w") as f:
        json.dump({"feature_names": names, "samples": samples}, f)
    acc = float((forest.predict(x[test]) == y[test]).mean())
    print(f"wrote {outdir}: forest accuracy on held-out data {acc:.3f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--demo":
        demo(sys.argv[2])
    else:
        print(__doc__)
        sys.exit(2)
