"""The error function as an autograd primitive: SciPy's erf forward, d erf(x)/dx = 2/sqrt(pi) exp(-x^2) backward
(itself differentiable, for Hessian-vector products). autograd.scipy.special defines the same, but importing it
loads all of autograd.scipy, and with it scipy.stats and scipy.integrate: most of a command's start-up time."""

import autograd.numpy as np
import scipy.special
from autograd.extend import defvjp, primitive

erf = primitive(scipy.special.erf)
defvjp(erf, lambda ans, x: lambda g: g * (2 / np.sqrt(np.pi)) * np.exp(-(x**2)))
