"""Adding training seeds until each claim's primary verdict is decided: a group-sequential plan (pure functions).

The plan. Every strategy and the baseline start with `start` seeds. At each look, every claim of every strategy
that is still open is judged on the first n seeds of the strategy and of the baseline: "better" or "worse" when
a repeated confidence interval (RCI) of the difference excludes 0, "equivalent" when a second RCI lies strictly
inside the declared margin (-margin, +margin), else "undecided". A verdict, once reached, is frozen. Strategies
with an open claim, and the baseline, get `batch` more seeds and are looked at again, up to `max_seeds` a side;
a claim still open there stays "undecided". Then every decided verdict is tested once more on fresh seeds (the
replication): one look at a fixed n, one-sided, Holm across the replicated comparisons of one claim.

Why repeated looks do not inflate the error rate. Looking at the data after every batch and stopping as soon as
an interval excludes 0 would, at a fixed 95% level, say "different" far more often than 5% of the time when
nothing differs (about 14% with five looks). Each look here instead uses a wider interval: the z critical values
c_1..c_K come from Lan and DeMets' O'Brien-Fleming-type alpha spending function f(t; a) = 2 - 2 Phi(z_{1-a/2}
/ sqrt(t)), t = n / max_seeds the share of the planned seeds seen so far, spending a = alpha / 2 on each side
(the symmetric two-sided bounds of gsDesign, ldbounds and rpact: 4.877, 3.357, 2.680, 2.290, 2.031 for five
equal looks at alpha 0.05): under no difference the chance of a first crossing at look k is
alpha(t_k) - alpha(t_{k-1}), alpha(t) = 2 f(t; alpha / 2) (the boundaries are found by recursive numerical
integration over the Brownian motion the standardised statistics form), so the chance of any false crossing,
over every look, is at most alpha(1) = alpha. Early looks spend almost nothing (a very wide interval), so the
last look is close to the fixed-n test (2.031 against 1.960). Jennison and Turnbull's repeated confidence
intervals (Group Sequential Methods, ch. 9) turn these boundaries into intervals that cover the true difference
at every look simultaneously with probability 1 - alpha, whatever rule decides when to stop; so stopping on
either the direction or the equivalence interval, and freezing each verdict, keeps both error rates. The
direction RCI uses the boundaries at alpha_c (two-sided), the equivalence RCI those at 2 alpha_c (two one-sided
tests at alpha_c each, as TOST). A z boundary c is used as a nominal two-sided level 1 - 2 (1 - Phi(c)) for the
exact or t interval of each kind of measure: Welch's t for means (of log values), Newcombe's hybrid score
interval for a difference of proportions, the F interval for a ratio of variances. That carries the normal
theory over approximately; tests/test_sequential.py and bench/sequential.py check the error rates by simulation.

Multiplicity. alpha is family-wise per claim. The m strategies of a claim are each compared with the baseline at
alpha_c = alpha / m (Bonferroni): Holm's step-down with group-sequential tests is not straightforward (a
strategy's rejection at one look would change the others' levels at later looks), while Bonferroni is simple and
conservative. The replication, one fixed-n look, uses Holm (comparison.holm).

Everything is a replay: `replay(plan, values)` takes the per-seed values on disk and re-runs every look from the
start. When the values do not reach what the next look (or the replication) needs, it stops there and says how
many seeds each strategy needs (`Outcome.needs`); the caller trains them and calls it again. Values beyond what
the procedure reads change nothing, so a run killed mid-way and restarted replays the same looks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

KINDS = ("mean", "proportion", "spread")
WORDS = ("better", "worse", "equivalent", "undecided")
GRID_SD = 12.0  # the integration grid stops this many sds of B(t) out: the mass beyond (~1e-33) is ignored


# ------------------------------------------------------------------ alpha spending and boundaries
def spent(t: float, alpha: float) -> float:
    """The two-sided alpha spent by information fraction t: Lan-DeMets' O'Brien-Fleming-type function
    f(t; a) = 2 - 2 Phi(z_{1-a/2} / sqrt(t)) spending a = alpha / 2 on each side, as gsDesign, ldbounds and rpact
    build symmetric two-sided bounds (f applied to the two-sided alpha spends 10 times more at t = 0.2)."""
    from scipy.special import ndtr, ndtri

    return float(4.0 * ndtr(-ndtri(1.0 - alpha / 4.0) / math.sqrt(t)))


def boundaries(fractions: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    """Two-sided z critical values c_1..c_K at the information fractions `fractions` (increasing, in (0, 1]):
    under H0 the first |Z_k| >= c_k happens at look k with probability alpha(t_k) - alpha(t_{k-1}). A look that
    has nothing left to spend gets inf."""
    fractions = tuple(float(t) for t in fractions)
    if not fractions or any(not 0.0 < t <= 1.0 for t in fractions):
        raise ValueError(f"fractions: each must be in (0, 1], got {fractions}")
    if any(b <= a for a, b in zip(fractions, fractions[1:])):
        raise ValueError(f"fractions: must increase, got {fractions}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: must be in (0, 1), got {alpha}")
    return _boundaries(tuple(round(t, 12) for t in fractions), round(float(alpha), 15))


@lru_cache(maxsize=4096)
def _boundaries(fractions: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    """Recursive numerical integration (Jennison & Turnbull ch. 19) over B(t) = Z sqrt(t), a Brownian motion:
    the sub-density of B(t_k) on paths not yet stopped, on a Simpson grid over the continuation region."""
    from scipy.special import ndtri

    out: list[float] = []
    x = mass = None  # grid of the previous look's continuation region; sub-density x Simpson weight there
    for k, t in enumerate(fractions):
        target = spent(t, alpha) - (spent(fractions[k - 1], alpha) if k else 0.0)
        if target <= 1e-300:
            c = math.inf
        elif k == 0:
            c = float(-ndtri(target / 2.0))
        else:
            c = _solve_boundary(x, mass, math.sqrt(t - fractions[k - 1]), t, target)
        out.append(c)
        if k + 1 < len(fractions):
            x, mass = _next_density(x, mass, t, fractions[k - 1] if k else 0.0, c, fractions[k + 1] - t)
    return tuple(out)


def _next_density(x, mass, t: float, t_prev: float, c: float, step_next: float):
    """The grid over look k's continuation region |B(t)| < c sqrt(t), and the sub-density there times the
    Simpson weights; the grid is fine enough for the next step's N(0, step_next) kernel."""
    half = min(c, GRID_SD) * math.sqrt(t)
    h = min(math.sqrt(step_next), math.sqrt(t)) / 20.0
    points = max(201, 2 * math.ceil(half / h) + 1)
    grid = np.linspace(-half, half, points)
    weights = np.full(points, 2.0)
    weights[1::2] = 4.0
    weights[0] = weights[-1] = 1.0
    weights *= (grid[1] - grid[0]) / 3.0
    if x is None:  # the first look: B(t) ~ N(0, t)
        density = _normal_pdf(grid / math.sqrt(t)) / math.sqrt(t)
    else:
        sd = math.sqrt(t - t_prev)
        density = _normal_pdf((grid[:, None] - x[None, :]) / sd) @ mass / sd
    return grid, density * weights


def _normal_pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def _solve_boundary(x: np.ndarray, mass: np.ndarray, sd: float, t: float, target: float) -> float:
    """c such that P(not stopped before, |B(t)| >= c sqrt(t)) = target, on the log scale (targets can be 1e-16)."""
    from scipy.optimize import brentq
    from scipy.special import log_ndtr, logsumexp

    with np.errstate(divide="ignore"):
        log_mass = np.log(mass)

    def gap(c: float) -> float:
        b = c * math.sqrt(t)
        crossing = np.logaddexp(log_ndtr((-b - x) / sd), log_ndtr((x - b) / sd))
        return float(logsumexp(log_mass + crossing)) - math.log(target)

    high = 40.0
    while gap(high) > 0:
        high *= 2.0
    return float(brentq(gap, 0.0, high, xtol=1e-10))


def nominal_level(boundary: float) -> float:
    """The two-sided confidence level a z critical value stands for: 1 - 2 (1 - Phi(c))."""
    from scipy.special import ndtr

    return 1.0 - 2.0 * float(ndtr(-boundary))


# ------------------------------------------------------------------ intervals on the comparison scale
@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    level: float = math.nan  # two-sided confidence level it was made at


def _tail(level: float) -> float:
    return (1.0 - level) / 2.0


def _finite(values) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return v[np.isfinite(v)]


def mean_interval(a, b, level: float) -> Interval:
    """mean(a) - mean(b) with its Welch t interval; NaN dropped. Bounds NaN with fewer than 2 values a side or
    no spread on either side."""
    from scipy.special import stdtrit

    a, b = _finite(a), _finite(b)
    if not len(a) or not len(b):
        return Interval(math.nan, math.nan, math.nan, level)
    estimate = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Interval(estimate, math.nan, math.nan, level)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    tiny = 1e-24 * max(1.0, float(a.mean()) ** 2, float(b.mean()) ** 2)
    if va + vb <= tiny:
        return Interval(estimate, math.nan, math.nan, level)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stdtrit(df, 1.0 - _tail(level))) * math.sqrt(va + vb)
    return Interval(estimate, estimate - half, estimate + half, level)


def proportion_interval(k: int, n: int, kb: int, nb: int, level: float) -> Interval:
    """k/n - kb/nb with Newcombe's hybrid score interval (the Wilson intervals of each side combined): the
    interval statsmodels' confint_proportions_2indep(method="newcomb", compare="diff") gives, computed here
    directly (the simulations call it hundreds of thousands of times)."""
    from scipy.special import ndtri

    if n < 1 or nb < 1:
        return Interval(math.nan, math.nan, math.nan, level)
    z = float(ndtri(1.0 - _tail(level))) if level < 1.0 else math.inf
    if z == math.inf:
        return Interval(k / n - kb / nb, -1.0, 1.0, level)
    (p, low, high), (pb, low_b, high_b) = _wilson(k, n, z), _wilson(kb, nb, z)
    return Interval(p - pb, p - pb - math.hypot(p - low, high_b - pb), p - pb + math.hypot(high - p, pb - low_b), level)


def _wilson(k: int, n: int, z: float) -> tuple[float, float, float]:
    """(k/n, Wilson's score interval for it at the two-sided normal quantile z)."""
    centre = (k + z * z / 2.0) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(k * (n - k) / n + z * z / 4.0)
    return k / n, max(0.0, centre - half), min(1.0, centre + half)


def spread_interval(a, b, level: float) -> Interval:
    """log(sd(a) / sd(b)) with the F interval of the variance ratio, halved on the log scale; NaN dropped."""
    from scipy.special import fdtri

    a, b = _finite(a), _finite(b)
    if len(a) < 2 or len(b) < 2:
        return Interval(math.nan, math.nan, math.nan, level)
    va, vb = float(a.var(ddof=1)), float(b.var(ddof=1))
    if va <= 0.0 or vb <= 0.0:
        return Interval(math.nan, math.nan, math.nan, level)
    log_ratio = math.log(va / vb)
    dfa, dfb = len(a) - 1, len(b) - 1
    upper_f, lower_f = float(fdtri(dfa, dfb, 1.0 - _tail(level))), float(fdtri(dfa, dfb, _tail(level)))
    low, high = (log_ratio - math.log(upper_f)) / 2.0, (log_ratio - math.log(lower_f)) / 2.0
    return Interval(log_ratio / 2.0, low, high, level)


def interval(kind: str, a, b, level: float) -> Interval:
    """The interval of one kind of measure for per-seed values a (strategy) and b (baseline)."""
    if kind == "mean":
        return mean_interval(a, b, level)
    if kind == "spread":
        return spread_interval(a, b, level)
    fa, fb = _finite(a), _finite(b)
    return proportion_interval(int(fa.sum()), len(fa), int(fb.sum()), len(fb), level)


# ------------------------------------------------------------------ one look
@dataclass(frozen=True)
class Judgement:
    """One comparison (strategy against baseline, one claim's measure) at one look."""

    word: str  # better | worse | equivalent | undecided (lower is better)
    difference: Interval  # the direction RCI (boundaries at alpha_c)
    equivalence: Interval  # the equivalence RCI (boundaries at 2 alpha_c)
    within_margin: bool = False  # a direction was found and the equivalence RCI is inside the margin too


def verdict(difference: Interval, equivalence: Interval, margin: float) -> Judgement:
    """The verdict of one look from its two repeated confidence intervals."""
    inside = bool(-margin < equivalence.low and equivalence.high < margin)
    if difference.high < 0:
        return Judgement("better", difference, equivalence, inside)
    if difference.low > 0:
        return Judgement("worse", difference, equivalence, inside)
    return Judgement("equivalent" if inside else "undecided", difference, equivalence)


def judge(kind: str, a, b, margin: float, diff_boundary: float, equiv_boundary: float) -> Judgement:
    """One comparison at one look, from its two z boundaries (at alpha_c and at 2 alpha_c)."""
    return verdict(interval(kind, a, b, nominal_level(diff_boundary)),
                   interval(kind, a, b, nominal_level(equiv_boundary)), margin)  # fmt: skip


# ------------------------------------------------------------------ the plan and its replay
@dataclass(frozen=True)
class Plan:
    baseline: str
    strategies: tuple[str, ...]  # compared with the baseline (baseline not included)
    measures: dict[str, tuple[str, str, float]]  # claim -> (measure, kind, margin on the comparison scale)
    start: int  # seeds per side at the first look (seeds 0..start-1)
    batch: int  # seeds added per look to every strategy with an open claim, and to the baseline
    max_seeds: int  # cap per side
    alpha: float  # per claim, family-wise
    replicate: int  # fresh seeds per side for the replication (0: none)

    def __post_init__(self) -> None:
        problems = [
            ("strategies", not self.strategies, "at least one strategy to compare with the baseline"),
            ("strategies", self.baseline in self.strategies, f"must not include the baseline {self.baseline!r}"),
            ("strategies", len(set(self.strategies)) != len(self.strategies), "each strategy once"),
            ("measures", not self.measures, "at least one claim"),
            ("start", self.start < 2, f"at least 2 seeds a side at the first look, got {self.start}"),
            ("batch", self.batch < 1, f"at least 1 seed added per look, got {self.batch}"),
            ("max_seeds", self.max_seeds < self.start, f"at least start ({self.start}), got {self.max_seeds}"),
            ("alpha", not 0.0 < self.alpha < 0.5, f"must be in (0, 0.5), got {self.alpha}"),
            ("replicate", self.replicate < 0 or self.replicate == 1,
             f"0 (none) or at least 2 seeds a side, got {self.replicate}"),
        ]  # fmt: skip
        for name, bad, what in problems:
            if bad:
                raise ValueError(f"Plan.{name}: {what}")
        for claim, spec in self.measures.items():
            if not (isinstance(spec, tuple) and len(spec) == 3):
                raise ValueError(f"Plan.measures[{claim!r}]: expected (measure, kind, margin), got {spec!r}")
            _, kind, margin = spec
            if kind not in KINDS:
                raise ValueError(f"Plan.measures[{claim!r}] kind: {kind!r} is not one of {', '.join(KINDS)}")
            if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
                raise ValueError(f"Plan.measures[{claim!r}] margin: must be a positive number, got {margin!r}")

    @property
    def alpha_per_comparison(self) -> float:
        """alpha_c: Bonferroni across the strategies of one claim."""
        return self.alpha / len(self.strategies)

    def fraction(self, n: int) -> float:
        return n / self.max_seeds


@dataclass
class Look:
    index: int  # 1, 2, ...
    n: dict[str, int]  # seeds per side this look used: each strategy judged, and the baseline
    fraction: float  # information fraction n / max_seeds
    boundary: float  # z critical value of the direction RCIs (alpha_c)
    equivalence_boundary: float  # and of the equivalence RCIs (2 alpha_c)
    judgements: dict[tuple[str, str], Judgement]  # (strategy, claim) -> its verdict at this look


@dataclass
class Verdict:
    word: str  # better | worse | equivalent | undecided
    look: int | None  # the look it was reached at (or the last look judged; None: not judged yet)
    n: int  # seeds of the strategy and of the baseline at that look
    n_baseline: int
    difference: Interval | None  # the figures that decided it (or that would have)
    equivalence: Interval | None
    within_margin: bool = False
    settled: bool = False  # False while the claim is still open: more looks may come
    capped: bool = False  # undecided at max_seeds


@dataclass
class Replication:
    verdict: str  # the verdict that was tested again
    word: str  # replicated | contradicted | not replicated
    n: int  # fresh seeds per side
    p: float  # Holm-adjusted one-sided p of the same verdict (TOST for "equivalent")
    p_contrary: float  # Holm-adjusted one-sided p of the other direction (of lying outside the margin)
    interval: Interval  # the difference on the fresh seeds, two-sided at 1 - 2 alpha (the one-sided tests' level)


@dataclass
class Outcome:
    plan: Plan
    looks: list[Look]
    verdicts: dict[tuple[str, str], Verdict]
    replication: dict[tuple[str, str], Replication]
    needs: dict[str, int]  # strategy -> seeds (0..needs-1) it must have to go on; {} when done
    missing: dict[str, tuple[int, ...]]  # the seeds among those the next step reads and does not have yet
    done: bool

    def to_dict(self) -> dict:
        """Plain JSON-able data: (strategy, claim) keys as "strategy/claim", NaN and inf as None."""
        looks = [{**_plain({k: v for k, v in asdict(look).items() if k != "judgements"}),
                  "judgements": _keyed(look.judgements)} for look in self.looks]  # fmt: skip
        return {"plan": _plain(asdict(self.plan)), "looks": looks, "verdicts": _keyed(self.verdicts),
                "replication": _keyed(self.replication), "needs": dict(self.needs),
                "missing": {s: list(v) for s, v in self.missing.items()}, "done": self.done}  # fmt: skip


def _keyed(entries: dict) -> dict:
    return {f"{strategy}/{claim}": _plain(asdict(v)) for (strategy, claim), v in entries.items()}


def _plain(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


@dataclass
class _State:
    verdicts: dict[tuple[str, str], Verdict] = field(default_factory=dict)
    looks: list[Look] = field(default_factory=list)


def replay(plan: Plan, values: dict[str, dict[str, list[float]]]) -> Outcome:
    """The whole procedure on the per-seed values on disk (values[strategy][measure], in seed order, NaN where
    a run has no value): every look from the first, then the replication; stops where the values run out."""
    have = {s: _seeds_on_disk(values, s, plan) for s in (plan.baseline, *plan.strategies)}
    unjudged = {(s, c): Verdict("undecided", None, 0, 0, None, None) for s in plan.strategies for c in plan.measures}
    state = _State(unjudged)
    active, n, fractions = list(plan.strategies), plan.start, []
    while active:
        if short := _short(have, {s: n for s in (plan.baseline, *active)}):
            return _outcome(plan, state, {}, short)
        fractions.append(plan.fraction(n))
        _look(plan, values, state, active, n, tuple(fractions))
        if n == plan.max_seeds:
            break
        active = [s for s in active if any(not state.verdicts[(s, c)].settled for c in plan.measures)]
        n = min(n + plan.batch, plan.max_seeds)
    for v in state.verdicts.values():
        if not v.settled:
            v.settled = v.capped = True
    decided = [key for key, v in state.verdicts.items() if v.word != "undecided"]
    if not plan.replicate or not decided:
        return _outcome(plan, state, {}, {})
    first = state.looks[-1].n[plan.baseline]  # the largest seed count anyone used
    needed = {plan.baseline: first + plan.replicate} | {s: first + plan.replicate for s, _ in decided}
    if short := _short(have, needed, first):
        return _outcome(plan, state, {}, short)
    return _outcome(plan, state, _replicate(plan, values, state, decided, first), {})


def _seeds_on_disk(values: dict, strategy: str, plan: Plan) -> int:
    measures = values.get(strategy, {})
    return min(len(measures.get(m, ())) for m, _, _ in plan.measures.values())


def _short(have: dict[str, int], needed: dict[str, int], first: int = 0) -> dict[str, tuple[int, int]]:
    """strategy -> (seeds it needs, the first seed it lacks that the next step reads), for those short."""
    return {s: (k, max(have[s], first)) for s, k in needed.items() if have[s] < k}


def _look(plan: Plan, values: dict, state: _State, active: list[str], n: int, fractions: tuple[float, ...]) -> None:
    alpha_c = plan.alpha_per_comparison
    c_diff, c_equiv = boundaries(fractions, alpha_c)[-1], boundaries(fractions, 2 * alpha_c)[-1]
    index = len(state.looks) + 1
    judgements = {}
    for s in active:
        for claim, (measure, kind, margin) in plan.measures.items():
            current = state.verdicts[(s, claim)]
            if current.settled:
                continue
            j = judge(kind, values[s][measure][:n], values[plan.baseline][measure][:n], margin, c_diff, c_equiv)
            judgements[(s, claim)] = j
            state.verdicts[(s, claim)] = Verdict(j.word, index, n, n, j.difference, j.equivalence, j.within_margin,
                                                 settled=j.word != "undecided")  # fmt: skip
    counts = {s: n for s in active} | {plan.baseline: n}
    state.looks.append(Look(index, counts, fractions[-1], c_diff, c_equiv, judgements))


def _outcome(plan: Plan, state: _State, replication: dict, short: dict[str, tuple[int, int]]) -> Outcome:
    needs = {s: k for s, (k, _) in short.items()}
    missing = {s: tuple(range(lo, k)) for s, (k, lo) in short.items()}
    return Outcome(plan, state.looks, state.verdicts, replication, needs, missing, done=not short)


# ------------------------------------------------------------------ the replication
def _replicate(plan: Plan, values: dict, state: _State, decided: list[tuple[str, str]], first: int) -> dict:
    """Each decided verdict tested once more on seeds first..first+replicate-1 of the strategy and the
    baseline: one-sided at alpha, Holm across the replicated comparisons of one claim."""
    from aegan.report.comparison import holm

    fresh = slice(first, first + plan.replicate)
    out = {}
    for claim, (measure, kind, margin) in plan.measures.items():
        keys = [key for key in decided if key[1] == claim]
        if not keys:
            continue
        tests = {}
        for s, _ in keys:
            a, b = values[s][measure][fresh], values[plan.baseline][measure][fresh]
            tests[s] = one_sided_pvalues(kind, a, b, state.verdicts[(s, claim)].word, margin)
        same = holm([tests[s][0] for s, _ in keys])
        other = holm([tests[s][1] for s, _ in keys])
        for (s, _), p, q in zip(keys, same, other):
            word = "replicated" if p < plan.alpha else "contradicted" if q < plan.alpha else "not replicated"
            fig = interval(kind, values[s][measure][fresh], values[plan.baseline][measure][fresh], 1 - 2 * plan.alpha)
            out[(s, claim)] = Replication(state.verdicts[(s, claim)].word, word, plan.replicate, p, q, fig)
    return out


def one_sided_pvalues(kind: str, a, b, word: str, margin: float) -> tuple[float, float]:
    """(p of the verdict `word` on these values, p of its contrary), each one-sided at a fixed n: for "better"
    H0 difference >= 0 against < 0 (and the contrary > 0); for "worse" the mirror; for "equivalent" TOST's p
    (the larger of the two one-sided p's against the margins) and the p of lying beyond one margin."""
    below, above = (lambda x: _p_below(kind, a, b, x)), (lambda x: _p_above(kind, a, b, x))
    if word == "better":
        return below(0.0), above(0.0)
    if word == "worse":
        return above(0.0), below(0.0)
    if word == "equivalent":
        return max(below(margin), above(-margin)), min(above(margin), below(-margin))
    raise ValueError(f"word: only a decided verdict is tested again, got {word!r}")


def _p_below(kind: str, a, b, theta: float) -> float:
    """One-sided p of H0 difference >= theta against difference < theta; NaN where not testable."""
    from scipy.special import fdtr, stdtr

    if kind == "proportion":
        return _p_by_inversion(a, b, theta)
    a, b = _finite(a), _finite(b)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    va, vb = a.var(ddof=1), b.var(ddof=1)
    if kind == "mean":
        se2 = va / len(a) + vb / len(b)
        if se2 <= 0:
            return math.nan
        df = se2**2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
        return float(stdtr(df, (a.mean() - b.mean() - theta) / math.sqrt(se2)))
    if va <= 0 or vb <= 0:
        return math.nan
    return float(fdtr(len(a) - 1, len(b) - 1, va / vb / math.exp(2 * theta)))


def _p_above(kind: str, a, b, theta: float) -> float:
    """One-sided p of H0 difference <= theta against difference > theta."""
    if kind == "proportion":
        return _p_by_inversion(b, a, -theta)
    p = _p_below(kind, a, b, theta)
    return 1.0 - p if math.isfinite(p) else p


def _p_by_inversion(a, b, theta: float) -> float:
    """One-sided p of H0 difference >= theta (proportions a - b): the one-sided level at which Newcombe's upper
    bound reaches theta."""
    from scipy.optimize import brentq

    fa, fb = _finite(a), _finite(b)
    k, n, kb, nb = int(fa.sum()), len(fa), int(fb.sum()), len(fb)
    if n < 1 or nb < 1:
        return math.nan

    def gap(log_p: float) -> float:  # upper bound of the interval at one-sided level p, minus theta
        return proportion_interval(k, n, kb, nb, 1.0 - 2.0 * math.exp(log_p)).high - theta

    if k / n - kb / nb >= theta:  # the estimate is not below theta: at most evidence for the contrary
        return 1.0 if k / n - kb / nb > theta else 0.5
    lowest = math.log(1e-12)
    if gap(lowest) < 0:
        return 1e-12
    return float(math.exp(brentq(gap, lowest, math.log(0.5), xtol=1e-6)))
