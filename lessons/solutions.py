"""One solution to each exercise of the lessons, for teachers (and for the tests, which run every lesson with them
filled in): `tinygrok lesson N --solutions` runs lesson N with them, `--notebook --solutions` writes it so.

Each is the Python expression that replaces `None` in the lesson's line `answer_X = None  # your answer`.
"""

SOLUTIONS = {
    "1a": "96 * 96 // 2",
    "1b": "(3 - 5) % 97",
    "1c": 'next(r["step"] for r in rows if r["test_acc"] >= 0.5)',
    "2a": "1 - np.tanh(0.5) ** 2",
    "2b": "lambda z, c: model.softmax(z) - np.eye(len(z))[c]",
    "2c": "np.polyfit(np.log10(steps[right]), np.log10(np.array(errors)[right]), 1)[0]",
    "3a": "(3, 4, 2, 16)",
    "3b": "lambda h, p: (lambda heads: np.reshape(np.transpose(model.softmax(heads('Q') @ np.swapaxes(heads('K'), -1, "
    "-2) / np.sqrt(dh)) @ heads('V'), (0, 2, 1, 3)), h.shape) @ p['W_O'] + p['b_O'])(lambda m: np.transpose(np.reshape("
    "h @ p[f'W_{m}'] + p[f'b_{m}'], (*h.shape[:2], cfg.n_heads, dh)), (0, 2, 1, 3)))",
    "3c": "97 * 128 + 2 * 128 + 2 * (4 * 128 * 128 + 4 * 128 + 4 * 128 + 128 * 256 + 256 + 256 * 128 + 128)"
    " + 2 * 128 + 128 * 97 + 97",
    "4a": "theta * (1 - 0.1 * 1.0) - 0.1 * np.sign(g)",
    "4b": "np.array([3.0, 4.0]) / (5 + 1e-6)",
    "4c": '"AdamW, decay 1"',
    "4d": "lambda theta, x, y: grad(model.flat_loss)(theta, x, y, cfg)",
    "4e": "lambda theta, state, x, y: adamw_step(theta, clip_by_global_norm(answer_4d(theta, x, y), "
    "cfg.clip_norm)[0], state, **hyper)",
    "4f": '"readable"',
    "5a": "1.0",
    "5b": "lambda traj: (lambda s: s[0] ** 2 / np.sum(s**2))(np.linalg.svd((traj - traj[0]) - (traj - traj[0]).mean("
    "axis=0), compute_uv=False))",
    "5c": "lambda step_norms, dim, rng: np.vstack([np.zeros(dim), np.cumsum((g := rng.standard_normal((len("
    "step_norms), dim))) * (step_norms / np.linalg.norm(g, axis=1))[:, None], axis=0)])",
    "5d": "lambda traj, r, directions: (lambda t, moves: r ** t[:, None] * (traj[0] + np.vstack([0 * traj[0], "
    "np.cumsum(r ** -t[1:, None] * moves, axis=0)])))(np.arange(len(traj)), np.linalg.norm(traj[1:] - r * "
    "traj[:-1], axis=1)[:, None] * directions / np.linalg.norm(directions, axis=1, keepdims=True))",
    "5e": '"blocks.0.W_V"',
    "5f": "np.stack([np.concatenate([np.zeros(layout[name][0]), row, np.zeros(n_params - layout[name][0] - row.size)]) "
    "for name, traj in trajectories.items() for row in trajectory_pca(traj).components[:2]], axis=1)",
    "6a": "0.0",
    "6b": 'np.polyfit(np.log(etas[straight]), np.log(errors["after grokking"][straight]), 1)[0]',
    "6c": 'defect_sample(initial, batch_a, batch_b, derivatives, 1e-3)["defect"] '
    '/ defect_sample(initial, batch_a, batch_b, derivatives, 1e-4)["defect"]',
    "6d": "lambda theta, tokens, labels, v: grad(lambda t: anp.dot(grad(model.flat_loss)(t, tokens, labels, cfg), v))"
    "(theta)",
    "6e": "lambda theta, grad_a, grad_b, eta: np.linalg.norm((theta - eta * grad_a(theta) - eta * grad_b(theta - eta * "
    "grad_a(theta))) - (theta - eta * grad_b(theta) - eta * grad_a(theta - eta * grad_b(theta)))) / (np.linalg.norm("
    "eta * grad_a(theta)) * np.linalg.norm(eta * grad_b(theta)))",
    "6f": "lambda delta, basis: np.linalg.norm(delta - basis @ (basis.T @ delta)) / np.linalg.norm(delta)",
    "7a": 'lambda probed: next((r["step"] for r in probed[2:] if r["defect"] > 10 * max(np.median('
    '[q["defect"] for q in probed[:3]]), 0.1) and r["defect"] > 20), None)',
    "7b": 'analysis.first_step(rows, "test_acc", 0.9) - onset',
    "7c": 'run.summary()["lead_steps"] / analysis.first_step(rows, "test_acc", 0.9)',
    "7d": 'max(rows, key=lambda r: r["test_loss"])["step"]',
    "7e": "10 ** np.polyval(np.polyfit(np.log10([r.lr for r in grokked]), np.log10([r.grok_90 for r in grokked]), 1), "
    "np.log10(stored.lr))",
    "7f": "lambda before, T: next((before[i][0] for i in range(len(before)) if all(g is not None and abs(g - T) <= "
    "0.1 * T for _, g in before[i:])), None)",
    "8a": "[1.0, 2.0, 1.5]",
    "8b": '{"s = 0"}',
    "8c": "lambda samples, basis: (lambda d: (lambda u: u / np.linalg.norm(u))(d - basis @ (basis.T @ d)))(sorted("
    'samples, key=lambda s: s["defect"])[len(samples) // 2]["delta"])',
    "8d": '(runs["curvature kicks, alpha 100"].summary()["grok_step"], '
    'runs["random kicks, alpha 100"].summary()["grok_step"])',
    "8e": 'type("Outside", (interventions.Hook,), {"before_update": lambda self, theta, grad, step, ctx: (theta, '
    "grad - ctx.basis @ (ctx.basis.T @ grad) if step + 1 >= 500 else grad)})",
    "9a": "lambda w: (lambda e: e[1::2] + e[2::2])(np.sum((fourier.basis(len(w)) @ w) ** 2, axis=1))",
    "9b": "float(model.cross_entropy(logits - fourier.key_logits(logits, keys), labels))",
    "9c": "lambda steps, values, start, end: (lambda a, b: None if a == b else next((s for s, v in zip(steps, values) "
    "if s > start and np.sign(b - a) * (v - a - (b - a) / 4) >= 0), None))(values[steps.index(start)], "
    "values[steps.index(end)])",
}
