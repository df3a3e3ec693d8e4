"""`spaces.GPU` on a Hugging Face ZeroGPU Space, a no-op decorator everywhere else.

Imported before anything that imports torch: ZeroGPU must patch CUDA first.
"""

GPU_DURATION_S = 120  # the most one request may hold a ZeroGPU slice

try:
    import spaces

    gpu = spaces.GPU(duration=GPU_DURATION_S)
except ImportError:

    def gpu(fn):
        return fn
