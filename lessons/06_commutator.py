# %% [markdown]
# # Lesson 6: The commutator defect and the Lie bracket
#
# **Duration:** 30 min in class; code: about 10 s on 2 cores (FAST: the same)
#
# **The paper:** [arXiv 2602.16746](https://arxiv.org/abs/2602.16746); `docs/paper.md` summarises its formulas,
# protocols and numbers.
#
# **Before this lesson:** lessons 2 and 5; Taylor expansion to second order; the Hessian.
#
# **Reading:** docs/paper.md §6 (the commutator defect); the paper (arXiv 2602.16746), its section on the defect and
# the Lie bracket.
#
# **Learning goals**
# - take two gradient steps in both orders and measure how far apart they land: the commutator defect D;
# - see that for small steps the gap is η² times a Lie bracket of the two gradient fields, H_B g_A - H_A g_B,
#   computed exactly with Hessian-vector products;
# - know why D measures curvature, why for small steps it does not depend on the step size η, and how far it
#   does at the paper's η;
# - measure where the curvature points (ρ, the share of δ outside the execution subspace), and see why ρ ≈ 1 is
#   nearly automatic while exec/random, against random subspaces of the same size, is the informative number.

# %% [markdown]
# ## Two steps, both orders
#
# From parameters θ, take two training batches A and B with plain cross-entropy gradients g_A(θ), g_B(θ) (no
# Adam, no decay, no clipping: docs/paper.md §6.1):
#
# θ_AB = θ - η g_A(θ) - η g_B(θ - η g_A(θ)),   θ_BA = θ - η g_B(θ) - η g_A(θ - η g_B(θ)),
#
# δ = θ_AB - θ_BA,   D = ||δ|| / (||η g_A|| ||η g_B||).
#
# On a linear landscape (H = 0), or with A = B, the two orders land in the same place. In general they do not.
# Expand the second gradient to first order around θ, with H_B the Hessian of batch B's loss:
#
# g_B(θ - η g_A) = g_B - η H_B g_A + O(η²),   so   θ_AB = θ - η g_A - η g_B + η² H_B g_A + O(η³),
#
# and the same with A and B swapped: θ_BA = θ - η g_B - η g_A + η² H_A g_B + O(η³). The first-order steps cancel
# in the difference:
#
# δ = θ_AB - θ_BA = η² (H_B g_A - H_A g_B) + O(η³).
#
# H_B g_A - H_A g_B is the *Lie bracket* [g_A, g_B] of the two gradient fields: how much each field changes along
# the other (the Hessian H, the matrix of the loss's second derivatives, is how a gradient changes), one change
# minus the other. It is zero where the two flows commute, where the order of the steps does not matter.
#
# Each order's second step feels how the first one changed the other batch's gradient; that change is the Hessian
# times the first step. The defect is a normalised curvature, and the η² cancels between numerator and
# denominator. The toy below draws it in two dimensions: two quadratic losses L_A, L_B with different Hessians,
# one step of each in both orders, and a large η so that the gap shows. (Quadratic losses have gradients linear in
# θ, so there the expansion is exact: δ / η² is the bracket, with no O(η³) left.)

# %%
import numpy as np
from matplotlib.figure import Figure

from tinygrok.engine.parallel import Derivatives
from tinygrok.lab import lessons, recipes
from tinygrok.science import model
from tinygrok.science.commutator import defect_sample, lie_bracket
from tinygrok.science.data import make_dataset, sample_batch, stream

h_a, h_b = np.array([[1.0, 0.0], [0.0, 4.0]]), np.array([[3.0, 1.0], [1.0, 1.0]])  # the two batches' Hessians
centre_a, centre_b = np.array([1.0, -1.0]), np.array([-1.0, 0.5])  # the two batches' minima
toy_grad = {"A": lambda t: h_a @ (t - centre_a), "B": lambda t: h_b @ (t - centre_b)}
start, toy_eta = np.array([0.5, 1.0]), 0.25
fig = Figure(figsize=(5, 4.5), layout="constrained")
ax = fig.subplots()
ends = {}
for first, second in (("A", "B"), ("B", "A")):
    middle = start - toy_eta * toy_grad[first](start)
    ends[first + second] = middle - toy_eta * toy_grad[second](middle)
    ax.plot(*np.array([start, middle, ends[first + second]]).T, "o-", label=f"{first} then {second}")
bracket = h_b @ toy_grad["A"](start) - h_a @ toy_grad["B"](start)
print(f"δ / η² = {(ends['AB'] - ends['BA']) / toy_eta**2}; H_B g_A - H_A g_B = {bracket}")
ax.annotate("", xy=ends["AB"], xytext=ends["BA"], arrowprops=dict(arrowstyle="->", color="black"))
ax.text(*(ends["AB"] + ends["BA"]) / 2, "  δ", fontsize=12)
ax.set(title="Two steps in both orders land apart by δ", xlabel="θ_1", ylabel="θ_2", aspect="equal")
ax.legend()
lessons.show(fig, "lesson6_two_steps")

# %%
run = lessons.run(recipes.spec("train", "classroom"))
cfg = run.config().replace(dtype="float64")  # float64: the small-η limit needs the precision
trained = model.flatten({k: v.astype(cfg.dtype) for k, v in run.load_checkpoint()[0].items()})
initial = model.flatten(model.init_params(cfg, stream(cfg.seed, "init")))
data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
rng = stream(0, "lesson6")
derivatives = Derivatives(cfg)  # how the probes get gradients and Hessian-vector products: tinygrok's fast engine
batch_a, batch_b = sample_batch(data, cfg.batch_size, rng), sample_batch(data, cfg.batch_size, rng)
for name, theta in (("at initialisation", initial), ("after grokking", trained)):
    sample = defect_sample(theta, batch_a, batch_b, derivatives)
    print(f"{name:18s} D = {sample['defect']:8.2f}   ||eta g_A|| = {sample['step_norm']:.2e}")

# %% [markdown]
# **Exercise 6a.** What is D when both "batches" are the same batch A? Predict it; the check measures it.

# %%
answer_6a = None  # your answer
lessons.check(
    "6a",
    answer_6a,
    defect_sample(trained, batch_a, batch_a, derivatives)["defect"],
    hint="Write out θ_AA: is there any difference between the two orders?",
)

# %% [markdown]
# ## The exact bracket, and the limit η -> 0
#
# `lie_bracket` computes H_B g_A - H_A g_B with two Hessian-vector products (autograd differentiates the gradient
# once more). The defect's δ / η² should approach it, with an error that shrinks like η.

# %%
etas = np.logspace(-1, -5.5, 10)
errors = {}
for name, theta in (("at initialisation", initial), ("after grokking", trained)):
    bracket = lie_bracket(theta, batch_a, batch_b, derivatives)
    errors[name] = np.array(
        [
            np.linalg.norm(defect_sample(theta, batch_a, batch_b, derivatives, eta)["delta"] / eta**2 - bracket)
            for eta in etas
        ]
    ) / np.linalg.norm(bracket)
    print(name, " ".join(f"{eta:.0e}: {error:.1e}" for eta, error in zip(etas, errors[name])))

fig = Figure(figsize=(6.5, 4), layout="constrained")
ax = fig.subplots()
for name, error in errors.items():
    ax.loglog(etas, error, "o-", label=name)
ax.loglog(etas, etas, ":", color="grey", label="slope 1 (error = η)")
ax.axvline(1e-3, color="black", lw=0.8, ls="--", label="the paper's η = 1e-3")
ax.set_xlabel("step size η")
ax.set_ylabel("||δ/η² - bracket|| / ||bracket||")
ax.legend(fontsize=8)
ax.set_title("The defect converges to the Lie bracket as η -> 0")
lessons.show(fig, "lesson6_bracket")

# %% [markdown]
# Read the figure from the right. The error falls in proportion to η (parallel to the dotted line); at
# initialisation, at the smallest steps, float64 rounding of θ - η g takes over and it rises again. After grokking
# the landscape is far more curved: the straight part starts only at smaller η, and at the paper's η the defect
# still differs from its limit by the amount the figure shows (the printed errors give it exactly). D is an
# estimate of the bracket, best early in training.
#
# **Exercise 6b.** Fit the slope of log(error) against log(η) for the run after grokking, for η from 1e-3 down to
# 1e-5 (`np.polyfit`, degree 1), and give the fitted slope as polyfit returns it (not rounded). Which whole power
# of η is the error, then?

# %%
straight = (etas <= 1.01e-3) & (etas >= 0.99e-5)
answer_6b = None  # your answer
slope = np.polyfit(np.log(etas[straight]), np.log(errors["after grokking"][straight]), 1)[0]  # the measured slope
lessons.check(
    "6b",
    answer_6b,
    slope,
    rel=1e-6,
    hint="np.polyfit(log η, log error, 1)[0]; the next term of the expansion is O(η³), divided by η² ...",
)
assert abs(slope - 1) < 0.1, slope  # the error is O(η): the expansion's next term

# %% [markdown]
# **Exercise 6c.** D is normalised so that η cancels to first order. At initialisation, compute D at η = 1e-3 and
# at η = 1e-4 (`defect_sample(..., eta=...)["defect"]`) and give their ratio, D(1e-3) / D(1e-4), as computed.

# %%
answer_6c = None  # your answer
ratio = np.divide(*(defect_sample(initial, batch_a, batch_b, derivatives, eta)["defect"] for eta in (1e-3, 1e-4)))
assert abs(ratio - 1) < 0.01, ratio  # η cancels: D hardly depends on it at initialisation
lessons.check(
    "6c",
    answer_6c,
    ratio,
    rel=1e-6,
    hint="Both measure the same bracket, divided by the same norms, so the ratio is close to 1; not exactly 1: "
    "D(η) carries the O(η) term of the figure above.",
)

# %% [markdown]
# ## A Hessian-vector product, by hand
#
# The bracket needs H v, the Hessian of a batch's loss times a vector, without ever forming H (P x P, here
# 75,000² numbers). The trick: H v is the gradient of the scalar ∇L(θ) · v, so autograd's `grad`, applied twice,
# gives it at the cost of about two gradients.
#
# **Exercise 6d.** Write H v as a function of (theta, tokens, labels, v), with `grad` and the batch loss
# `model.flat_loss(theta, tokens, labels, cfg)`. The check compares it with the fast engine's Hessian-vector
# product at initialisation, on batch B, along the gradient of batch A: H_B g_A, the first half of the bracket.

# %%
import autograd.numpy as anp  # noqa: F401 - for your answer to 6d: inside a function autograd differentiates
from autograd import grad  # noqa: F401 - for your answer to 6d

answer_6d = None  # your answer
g_a = derivatives.gradients([(initial, *batch_a)])[0]  # (P,)
lessons.check(
    "6d",
    None if answer_6d is None else answer_6d(initial, *batch_b, g_a),
    derivatives.hvp(initial, batch_b, g_a),
    rel=1e-6,
    hint="H v is the gradient, in theta, of the dot product of the loss's gradient with v: grad of a function "
    "that calls grad. Use anp (autograd's numpy) inside it.",
)

# %% [markdown]
# ## A defect sample, by hand
#
# **Exercise 6e.** Write the defect itself, as a function of (theta, grad_a, grad_b, eta), where grad_a(t) and
# grad_b(t) return the two batches' gradients at t (P,): the two orders of steps from the top of this lesson, then
# D = ||θ_AB - θ_BA|| / (||η g_A(θ)|| ||η g_B(θ)||). The check runs it at initialisation with η = 1e-2, against
# `defect_sample`.

# %%
answer_6e = None  # your answer
grad_a, grad_b = ((lambda t, batch=batch: derivatives.gradients([(t, *batch)])[0]) for batch in (batch_a, batch_b))
lessons.check(
    "6e",
    None if answer_6e is None else answer_6e(initial, grad_a, grad_b, 1e-2),
    defect_sample(initial, batch_a, batch_b, derivatives, 1e-2)["defect"],
    rel=1e-6,  # defect_sample adds 1e-12 to the denominator, as the reference code does
    hint="Take the A step, then the B step from where it lands (its gradient at the new point); then the other "
    "order; divide the distance between the two ends as the formula says.",
)

# %% [markdown]
# ## Where the curvature points: ρ
#
# The paper's title says "transversely curved": δ lies almost wholly outside the execution subspace, the K = 16
# directions along which lesson 5's attention weights moved (B, P x K, orthonormal columns, P the number of
# parameters). Split δ in two, as lesson 8 will split the gradient: δ_∥ = B Bᵀ δ inside and δ_⊥ = δ - δ_∥
# outside; the paper's measure is
#
# ρ = ||δ_⊥|| / ||δ||   (1: all of δ outside B; 0: all of it inside).
#
# **Exercise 6f.** Write ρ as a function of (delta, basis). The check applies it to a defect of the trained model
# and lesson 5's basis, against `projection_fractions` (which returns ||δ_∥|| / ||δ|| and ρ).

# %%
from tinygrok.run import geometry
from tinygrok.science.commutator import projection_fractions
from tinygrok.science.pca import random_basis

_, basis = geometry.analyse_pca(run)  # lesson 5's execution basis B (P, 16), rebuilt from the run's snapshots
delta = defect_sample(trained, batch_a, batch_b, derivatives)["delta"]  # (P,) at the paper's η
answer_6f = None  # your answer
lessons.check(
    "6f",
    None if answer_6f is None else answer_6f(delta, basis),
    projection_fractions(delta, basis)[1],
    rel=1e-9,
    hint="δ_⊥ = δ - B (Bᵀ δ); two norms and a division.",
)

# %% [markdown]
# Is ρ close to 1 a finding? Take any fixed vector and a *random* K-dimensional subspace: each of the P directions
# holds 1/P of the vector's squared norm on average, so K of them hold K/P, a share of about √(K/P) of its norm,
# and ρ ≈ √(1 - K/P), within a hair of 1 when K is far below P. So ρ ≈ 1 holds for almost any small subspace. The
# informative number compares B with random subspaces of the same size: *exec/random* = ||Bᵀ δ|| / ||Rᵀ δ||, the
# latter averaged over random R (`random_basis`). Above 1, the curvature leans into B; below 1, away from it.

# %%
share_b = np.linalg.norm(basis.T @ delta) / np.linalg.norm(delta)
randoms = [random_basis(delta.size, basis.shape[1], rng) for _ in range(20)]
share_random = np.mean([np.linalg.norm(r.T @ delta) for r in randoms]) / np.linalg.norm(delta)
expected = np.sqrt(basis.shape[1] / delta.size)
print(f"share of ||δ|| in B {share_b:.4f}, in a random {basis.shape[1]}-dimensional subspace {share_random:.4f}")
print(f"(√(K/P) = {expected:.4f}); ρ = {np.sqrt(1 - share_b**2):.6f}; exec/random = {share_b / share_random:.2f}")
assert abs(share_random / expected - 1) < 0.2, (share_random, expected)  # the √(K/P) argument above
assert share_b < share_random, (share_b, share_random)  # what the text below says

# %% [markdown]
# Here, after grokking, B holds less of δ than a random subspace of its size does (exec/random below 1): the
# curvature leans away from the directions the weights travelled. In the paper's model, with this basis (the
# trajectory's own PCA), exec/random is 0.86-1.09 in the reference's stored data: about as much as a random
# subspace. With the basis its code used for the control (each attention matrix's top singular directions at θ) it
# is 1.8-2.9 in the memorization phase (docs/paper.md §6.4; tinygrok's numbers: docs/results.md, §10 #7). Either
# way ρ is within a hair of 1, and "transversely curved" says what the √(K/P) argument already gives: a small
# subspace cannot hold much of any direction.
#
# ## Going further
# - Do it in float32 (drop `.replace(dtype="float64")` above) with η = 1e-3, as the paper does: how many digits
#   of δ survive?
#   (docs/paper.md §6.6: late in training the gradients are so small that θ - η g rounds back to θ.)
# - exec/random with the reference's basis: `weight_svd_basis(trained, cfg)` from `tinygrok.science.commutator`
#   (3 singular directions of each attention matrix), at initialisation and after grokking.
# - Lesson 7 follows D through a whole run.
