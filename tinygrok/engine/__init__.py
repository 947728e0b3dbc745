"""What makes the science fast, tested equal to it: plain-NumPy kernels with no autograd in them (kernels), autograd
primitives whose gradients are those kernels (ops), the forward pass and its written-out backward on them (fast),
gradients side by side in worker processes (parallel), the array backends NumPy and CuPy (backend) and the strict
device stand-in the tests run the CuPy path on (standin).
"""
