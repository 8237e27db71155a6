"""codenet-pynq: CoDeNet from training to a Zynq FPGA accelerator, with a bit-exact CPU fallback."""

from setuptools import setup

# OpenCV is not a runtime requirement: PYNQ images ship their own cv2 and pip must not install
# opencv-python-headless over it. Hosts get it from the [host] extra (README); without cv2 the runtime
# says so (codenet_pynq/deps.py). matplotlib and ipywidgets are for the notebooks only.
RUNTIME = [
    "numpy>=1.21",
    "Pillow>=9.1",  # image headers (pixel count before decoding), see codenet_pynq/image_io.py
    "onnxruntime>=1.16",
    "tqdm>=4.60",
]
HOST = ["opencv-python-headless>=4.5", "onnx>=1.15"]  # onnx: the CPU backend builds its fast integer graph
NOTEBOOKS = ["matplotlib>=3.5", "ipywidgets>=7.6"]
TRAIN = ["torch>=2.1,<2.14", "onnx>=1.15", "pycocotools>=2.0.6", "pyyaml>=6.0", "pillow>=8.0"]
DEV = ["pytest>=7", "ruff>=0.4", "hls4ml>=0.8", "libclang>=16", "setuptools>=70.1"]  # setuptools: bdist_wheel built in

setup(
    name="codenet-pynq",
    version="0.1.0",
    description="CoDeNet detector: training, W4A8 quantization, FPGA accelerator on PYNQ, bit-exact CPU fallback",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.8",
    packages=[
        "codenet_pynq",
        "codenet_pynq.backends",
        "codenet_pynq.notebooks",
        "codenet_pynq.accel",
        "codenet_pynq.training",
        "codenet_pynq.training.models",
        "codenet_pynq.training.data",
        "codenet_pynq.training.quant",
        "codenet_pynq.training.eval",
    ],
    package_dir={"codenet_pynq": "codenet_pynq", "codenet_pynq.training": "training"},
    package_data={
        "codenet_pynq": ["models/*.codenet", "models/*.npz", "samples/*", "assets/*", "accel/codenet_params.h", "overlays/*/*"],
        "codenet_pynq.notebooks": ["*.ipynb"],
    },
    include_package_data=True,
    install_requires=RUNTIME,
    extras_require={
        "host": HOST,
        "notebooks": NOTEBOOKS,
        "train": TRAIN,
        "board": ["pynq>=2.7"],
        "dev": DEV + TRAIN + HOST + NOTEBOOKS,
    },
    entry_points={
        "console_scripts": [
            "codenet-pynq=codenet_pynq.cli:main",
            "codenet-pynq-train=codenet_pynq.training.entry:train",
            "codenet-pynq-eval=codenet_pynq.training.entry:evaluate",
            "codenet-pynq-export=codenet_pynq.training.entry:export",
            "codenet-pynq-data=codenet_pynq.training.entry:data",
        ],
        # `pynq get-notebooks codenet-pynq` copies the folder of this module (PYNQ's convention)
        "pynq.notebooks": ["codenet-pynq = codenet_pynq.notebooks"],
    },
)
