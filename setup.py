"""vps_d2: video polyp segmentation on Detectron2's foundations, installable from PyPI alone."""

from setuptools import find_packages, setup

# Lower bounds: the versions .ci/constraints-lowest.txt installs (onnxscript < 0.6 lacks the
# API torch 2.14's exporter calls).
DEPLOY = ["onnx>=1.18", "onnxscript>=0.6.0", "onnxruntime>=1.22"]

setup(
    name="vps_d2",
    version="0.1.0",
    description="Video polyp segmentation toolkit (PGN+AEN, SALI, Diff-VPS) in Detectron2 style",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["vps_d2", "vps_d2.*"]),
    include_package_data=True,
    # The configs (the shared base and each method's folder) and the SUN-SEG case table
    # ship inside the package: vps_d2.model_zoo.get_config_file finds them in a wheel too.
    package_data={
        "vps_d2.config": ["*.yaml"],
        "vps_d2.methods": ["*/configs/*.yaml", "*/README.md"],
        "vps_d2.data.datasets": ["*.csv"],
    },
    # The tools as commands (each module of vps_d2/cli; tools/<name>.py runs the same).
    entry_points={
        "console_scripts": [
            "vps-train = vps_d2.cli.train_net:console",
            "vps-evaluate = vps_d2.cli.evaluate:console",
            "vps-demo = vps_d2.cli.demo:console",
            "vps-synthesize = vps_d2.cli.synthesize:console",
            "vps-make-sample = vps_d2.cli.make_sample_dataset:console",
            "vps-quickstart = vps_d2.cli.quickstart:console",
            "vps-convert = vps_d2.cli.convert_weights:console",
            "vps-gpu-check = vps_d2.cli.gpu_check:console",
            "vps-d2-demo = vps_d2.cli.d2_demo:console",
            "vps-export = vps_d2.cli.export:console",
        ]
    },
    # Lower bounds = the versions .ci/constraints-lowest.txt installs and CI tests (see the
    # "Tested versions" in docs/install.md); CI also tests the newest versions pip resolves.
    install_requires=[
        "torch>=2.14.1",
        "torchvision>=0.29.1",
        "fvcore>=0.1.5.post20221221",
        "timm>=1.0.3",
        "opencv-python-headless>=4.8.0.76",
        "pycocotools>=2.0.7",
        "lightning-fabric>=2.4",
        "scipy>=1.10",
        "matplotlib>=3.7",
        "tensorboard>=2.14",
        "tqdm>=4.65",
        "numpy>=1.24",
        "pillow>=10.0",
        "pyyaml>=6.0",
    ],
    # The test oracle pysodmetrics is in no extra: it requires opencv < 5 and would decide the
    # OpenCV of the test install (tests/test_metrics.py skips its tests without it).
    extras_require={
        # tools/export.py (ONNX: onnx + onnxscript, torch.onnx's dynamo exporter) and the
        # ONNX Runtime backend (vps_d2.deploy, tools/demo.py --backend onnxruntime)
        "deploy": DEPLOY,
        # the deploy extra too, so that CI tests the export and ONNX Runtime paths
        "dev": ["pytest>=7.4", "pytest-timeout>=2.2", "pytest-xdist>=3.5", "ruff>=0.4", *DEPLOY],
        # with Detectron2 (not on PyPI, docs/detectron2.md): its COCOEvaluator's dependency
        "d2": ["pycocotools>=2.0.6"],
    },
)
