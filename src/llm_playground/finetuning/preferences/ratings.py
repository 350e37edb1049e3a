"""Win rates and ratings from votes.

Win rates count a tie as half a win; "both bad" votes are reported apart. The
Bradley–Terry model P(i beats j) = 1 / (1 + exp(θj − θi)) is fitted by Newton's method on
the log-likelihood (ties as half a win to each side), shown on the Elo scale
(1000 + 400·θ/ln 10) with 95% intervals from the observed information (or a bootstrap).
When the maximum-likelihood estimate does not exist (a model that never lost or never
won), a weak Gaussian prior keeps the ratings finite and the result says so. An online
Elo view (K = 32) is given as well.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llm_playground.finetuning.preferences.votes import CHOICES, SCHEMA_VERSION, Vote

if TYPE_CHECKING:  # numpy is imported where ratings are computed, not to store a vote
    import numpy as np

#: Ratings are shown on the Elo scale: BASE_RATING + ELO_SCALE * theta.
BASE_RATING = 1000.0
ELO_SCALE = 400.0 / math.log(10.0)
#: Strength of the Gaussian prior used only when the plain MLE does not exist.
DEFAULT_PRIOR = 0.1


@dataclass(frozen=True)
class Rating:
    """A model's Bradley–Terry rating on the Elo scale with its 95% interval.

    ``n_votes`` counts the votes the rating is fitted on (A/B and ties against another
    named model; "both bad" votes are not part of it)."""

    model: str
    rating: float
    ci_low: float
    ci_high: float
    n_votes: int


def _none_if_nan(x: float | None, digits: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


def _rated_votes(votes: Iterable[Vote]) -> tuple[list[tuple[str, str, str]], dict[str, int]]:
    """(model_a, model_b, choice) of votes that inform a rating, and what was left out."""
    rated = []
    skipped = {"unnamed": 0, "same_model": 0}
    for v in votes:
        if not v.model_a or not v.model_b:
            skipped["unnamed"] += 1
        elif v.model_a == v.model_b:
            skipped["same_model"] += 1
        else:
            rated.append((v.model_a, v.model_b, v.choice))
    return rated, skipped


def win_matrix(models: Sequence[str], rated: Iterable[tuple[str, str, str]]) -> np.ndarray:
    """W[i, j]: wins of model i over model j, a tie counting half to each; both-bad left out."""
    import numpy as np

    index = {m: i for i, m in enumerate(models)}
    w = np.zeros((len(models), len(models)))
    for ma, mb, choice in rated:
        a, b = index[ma], index[mb]
        if choice == "a":
            w[a, b] += 1
        elif choice == "b":
            w[b, a] += 1
        elif choice == "tie":
            w[a, b] += 0.5
            w[b, a] += 0.5
    return w


def _strongly_connected(w: np.ndarray) -> bool:
    """True when every model has beaten (or tied), directly or through others, every other:
    the condition for the Bradley–Terry maximum-likelihood estimate to exist."""
    import numpy as np

    n = len(w)
    if n <= 1:
        return True
    reach = (w > 0) | np.eye(n, dtype=bool)
    for k in range(n):  # transitive closure (Warshall)
        reach |= reach[:, [k]] & reach[[k], :]
    return bool(reach.all())


@dataclass(frozen=True)
class BTFit:
    """A Bradley–Terry fit: log-strengths (mean zero), their covariance, and how."""

    theta: np.ndarray
    cov: np.ndarray
    prior: float
    iterations: int
    converged: bool


def fit_bradley_terry(
    w: np.ndarray, *, prior: float | None = None, max_iter: int = 200, tol: float = 1e-10
) -> BTFit:
    """Maximise sum_ij W_ij log sigmoid(θi − θj) − prior/2·|θ|² by Newton's method.

    With ``prior=None`` the plain maximum-likelihood fit is used when it exists and
    :data:`DEFAULT_PRIOR` otherwise. The covariance is the inverse of the observed
    information on the mean-zero subspace.
    """
    import numpy as np

    w = np.asarray(w, dtype=float)
    n = len(w)
    if prior is None:
        prior = 0.0 if _strongly_connected(w) else DEFAULT_PRIOR
    games = w + w.T  # (models, models): how often i and j met
    wins = w.sum(axis=1)  # (models,)
    theta = np.zeros(n)  # log-strengths, everyone equal at the start
    # adding 1/n everywhere pins the mean: θ and θ + c predict the same, so the Hessian alone
    # is singular along (1, ..., 1)
    ones = np.ones((n, n)) / n

    def loglik(t: np.ndarray) -> float:
        d = t[:, None] - t[None, :]  # (models, models): θi − θj
        # log σ(d) = −log(1 + e^−d), written with logaddexp so a large gap cannot overflow
        return float(-(w * np.logaddexp(0.0, -d)).sum() - prior / 2 * (t @ t))

    def information(t: np.ndarray) -> np.ndarray:
        d = t[:, None] - t[None, :]
        p = 1.0 / (1.0 + np.exp(-d))  # P(i beats j), (models, models)
        q = games * p * (1.0 - p)  # the variance of each pair's outcomes
        info = -q
        np.fill_diagonal(info, q.sum(axis=1) - np.diag(q))
        return info + prior * np.eye(n)

    converged = n <= 1
    iterations = 0
    current = loglik(theta)
    for iterations in range(1, max_iter + 1):  # noqa: B007
        d = theta[:, None] - theta[None, :]
        p = 1.0 / (1.0 + np.exp(-d))
        # the gradient: wins minus the wins the current strengths expect, (models,)
        grad = wins - (games * p).sum(axis=1) - prior * theta
        info = information(theta)
        # Newton's step: the curvature says how far to go (a handful of steps, not hundreds)
        step = np.linalg.solve(info + ones, grad)
        scale = 1.0
        while True:  # backtracking keeps every step an ascent step
            candidate = theta + scale * step
            value = loglik(candidate)
            if value >= current - 1e-12 or scale < 1e-8:
                break
            scale /= 2
        theta, current = candidate - candidate.mean(), value
        if np.max(np.abs(scale * step)) < tol:
            converged = True
            break
    info = information(theta)
    cov = np.linalg.pinv(info, hermitian=True) if prior == 0 else np.linalg.inv(info)
    if prior == 0 and n > 0:  # project onto the mean-zero subspace
        c = np.eye(n) - ones
        cov = c @ cov @ c
    return BTFit(theta=theta, cov=cov, prior=prior, iterations=iterations, converged=converged)


def bradley_terry_simple(wins: np.ndarray, iterations: int = 2000) -> np.ndarray:
    """Bradley–Terry log-strengths θ (mean zero) by the textbook minorise–maximise update.

    `wins[i, j]` counts the wins of model i over model j. Each round sets every strength
    to its wins over its expected games (Zermelo 1929; Hunter 2004). Equal to
    fit_bradley_terry() where the fit needs no prior (tested); the fast path takes
    Newton steps, a handful instead of hundreds, and its curvature gives the intervals.
    """
    import numpy as np

    wins = np.asarray(wins, dtype=float)
    games = wins + wins.T  # games[i, j]: how often i and j met
    total_wins = wins.sum(axis=1)  # (models,)
    strength = np.ones(len(wins))  # exp(θ): everyone equal at the start
    for _ in range(iterations):
        # P(i beats j) = s_i / (s_i + s_j), so i "should" have won Σ_j games_ij s_i / (s_i + s_j)
        pair_sums = strength[:, None] + strength[None, :]  # (models, models)
        # the update: s_i = wins_i / Σ_j games_ij / (s_i + s_j), which never lowers the likelihood
        strength = total_wins / (games / pair_sums).sum(axis=1)
        # only ratios matter: rescale to a geometric mean of 1, i.e. θ with mean zero
        strength = strength / np.exp(np.log(strength).mean())
    return np.log(strength)


def _rating(theta: float) -> float:
    return BASE_RATING + ELO_SCALE * theta


def ratings_from_votes(votes: Iterable[Vote], *, bootstrap: int = 0, seed: int = 0) -> list[Rating]:
    """Bradley–Terry ratings (Elo scale, 95% CI) of every named model, best first."""
    table = _bt_table(list(votes), bootstrap=bootstrap, seed=seed)[0]
    return [
        Rating(
            model=r["model"],
            rating=r["rating"],
            ci_low=r["ci_low"],
            ci_high=r["ci_high"],
            n_votes=r["n_votes"],
        )
        for r in table
    ]


def _bt_table(votes: list[Vote], *, bootstrap: int, seed: int) -> tuple[list[dict], dict]:
    import numpy as np

    rated, _ = _rated_votes(votes)
    rated_bt = [r for r in rated if r[2] != "both-bad"]
    models = sorted({m for r in rated_bt for m in r[:2]})
    info: dict[str, Any] = {
        "prior": 0.0,
        "regularized": False,
        "iterations": 0,
        "converged": True,
        "method": "hessian" if not bootstrap else "bootstrap",
        "confidence": 0.95,
    }
    if not models:
        return [], info
    w = win_matrix(models, rated_bt)
    fit = fit_bradley_terry(w)
    info.update(
        prior=fit.prior,
        regularized=fit.prior > 0,
        iterations=fit.iterations,
        converged=fit.converged,
    )
    # the curvature at the optimum gives the standard errors: a normal 95 % interval
    se = np.sqrt(np.clip(np.diag(fit.cov), 0.0, None))
    low = fit.theta - 1.959964 * se
    high = fit.theta + 1.959964 * se
    if bootstrap:
        rng = np.random.default_rng(seed)
        samples = np.empty((int(bootstrap), len(models)))
        for b in range(int(bootstrap)):
            # the same number of votes, drawn with replacement: how much the fit would move
            picks = rng.integers(0, len(rated_bt), len(rated_bt))
            sample = [rated_bt[i] for i in picks]
            samples[b] = fit_bradley_terry(
                win_matrix(models, sample),
                prior=max(fit.prior, DEFAULT_PRIOR)
                if not _strongly_connected(win_matrix(models, sample))
                else fit.prior,
            ).theta
        low, high = np.percentile(samples, [2.5, 97.5], axis=0)
        se = samples.std(axis=0, ddof=1) if bootstrap > 1 else np.zeros(len(models))
    n_votes = dict.fromkeys(models, 0)
    for ma, mb, _ in rated_bt:
        n_votes[ma] += 1
        n_votes[mb] += 1
    rows = [
        {
            "model": m,
            "rating": round(float(_rating(fit.theta[i])), 3),
            "ci_low": round(float(_rating(low[i])), 3),
            "ci_high": round(float(_rating(high[i])), 3),
            "se": round(float(ELO_SCALE * se[i]), 3),
            "n_votes": n_votes[m],
        }
        for i, m in enumerate(models)
    ]
    rows.sort(key=lambda r: (-r["rating"], r["model"]))
    return rows, info


def elo_ratings(votes: Iterable[Vote], *, k: float = 32.0) -> list[dict]:
    """Online Elo in vote order (start 1000, ties 0.5, both-bad skipped), best first."""
    rated, _ = _rated_votes(votes)
    rating: dict[str, float] = {}
    games: dict[str, int] = {}
    for ma, mb, choice in rated:
        if choice == "both-bad":
            continue
        ra, rb = rating.setdefault(ma, BASE_RATING), rating.setdefault(mb, BASE_RATING)
        # Elo's expected score: 400 points apart means odds of 10 to 1
        expected_a = 1.0 / (1.0 + 10 ** ((rb - ra) / 400.0))
        score_a = {"a": 1.0, "b": 0.0, "tie": 0.5}[choice]
        rating[ma] = ra + k * (score_a - expected_a)
        rating[mb] = rb - k * (score_a - expected_a)
        games[ma] = games.get(ma, 0) + 1
        games[mb] = games.get(mb, 0) + 1
    rows = [{"model": m, "rating": round(r, 3), "n_votes": games[m]} for m, r in rating.items()]
    rows.sort(key=lambda r: (-r["rating"], r["model"]))
    return rows


def _tally(rated) -> tuple[dict[tuple[str, str], dict], dict[str, dict]]:
    """Per pair of models (in name order) and per model: votes, wins, losses, ties, both bad."""
    pairs: dict[tuple[str, str], dict] = {}
    per_model: dict[str, dict] = {}
    for ma, mb, choice in rated:
        first, second = sorted((ma, mb))
        p = pairs.setdefault(
            (first, second),
            {
                "model_1": first,
                "model_2": second,
                "n_votes": 0,
                "wins_1": 0,
                "wins_2": 0,
                "ties": 0,
                "both_bad": 0,
            },
        )
        p["n_votes"] += 1
        winner = {"a": ma, "b": mb}.get(choice)
        if winner is not None:
            p["wins_1" if winner == first else "wins_2"] += 1
        elif choice == "tie":
            p["ties"] += 1
        else:
            p["both_bad"] += 1
        for me in (ma, mb):
            s = per_model.setdefault(
                me, {"model": me, "n_votes": 0, "wins": 0, "losses": 0, "ties": 0, "both_bad": 0}
            )
            s["n_votes"] += 1
            if winner is None:
                s["ties" if choice == "tie" else "both_bad"] += 1
            elif winner == me:
                s["wins"] += 1
            else:
                s["losses"] += 1
    return pairs, per_model


def _model_rows(per_model: dict[str, dict], bt: dict[str, dict]) -> list[dict]:
    """Each model's tally with its win rate, both-bad rate and Bradley–Terry rating, best
    rated first."""
    models = []
    for name, s in per_model.items():
        decided = s["wins"] + s["losses"] + s["ties"]
        s["win_rate"] = _none_if_nan((s["wins"] + s["ties"] / 2) / decided) if decided else None
        s["both_bad_rate"] = _none_if_nan(s["both_bad"] / s["n_votes"]) if s["n_votes"] else None
        r = bt.get(name)
        s.update(
            rating=r["rating"] if r else None,
            ci_low=r["ci_low"] if r else None,
            ci_high=r["ci_high"] if r else None,
            se=r["se"] if r else None,
        )
        models.append(s)
    models.sort(
        key=lambda s: (-(s["rating"] if s["rating"] is not None else -math.inf), s["model"])
    )
    return models


def compute_stats(
    votes: Sequence[Vote], *, bootstrap: int = 0, seed: int = 0, elo_k: float = 32.0
) -> dict:
    """Counts, votes per pair of models, win rates, Bradley–Terry and Elo ratings.

    Win rate = (wins + ties/2) / (wins + losses + ties); "both bad" votes are counted
    apart (``both_bad`` and ``both_bad_rate`` over all of a model's votes)."""
    votes = list(votes)
    counts = dict.fromkeys(CHOICES, 0)
    for v in votes:
        counts[v.choice] += 1
    rated, skipped = _rated_votes(votes)
    pairs, per_model = _tally(rated)
    for p in pairs.values():
        decided = p["wins_1"] + p["wins_2"] + p["ties"]
        p["win_rate_1"] = _none_if_nan((p["wins_1"] + p["ties"] / 2) / decided) if decided else None
        p["win_rate_2"] = _none_if_nan((p["wins_2"] + p["ties"] / 2) / decided) if decided else None
    bt_rows, bt_info = _bt_table(votes, bootstrap=bootstrap, seed=seed)
    models = _model_rows(per_model, {r["model"]: r for r in bt_rows})
    return {
        "schema_version": SCHEMA_VERSION,
        "votes": {**counts, "total": len(votes)},
        "excluded_from_ratings": skipped,
        "pairs": sorted(pairs.values(), key=lambda p: (-p["n_votes"], p["model_1"], p["model_2"])),
        "models": models,
        "ratings": bt_rows,
        "bradley_terry": {
            "scale": "elo",
            "base_rating": BASE_RATING,
            "scale_factor": round(ELO_SCALE, 6),
            "ties": "half a win each",
            "both_bad": "excluded",
            **bt_info,
        },
        "elo": {"k": elo_k, "ratings": elo_ratings(votes, k=elo_k)},
    }
