"""Fixtures: a context per device (``ctx`` runs a test on each), from ``common``."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import wgpu_loss  # noqa: E402
from common import DEVICES, context  # noqa: E402


@pytest.fixture(params=DEVICES)
def ctx(request):
    return context(request.param)


@pytest.fixture
def gpu():
    return context("gpu")


@pytest.fixture
def cpu():
    return context("cpu")


def pytest_report_header(config):
    try:
        return f"wgpu_loss {wgpu_loss.__version__}; GPU: {context('gpu').adapter}"
    except BaseException as e:  # noqa: BLE001 - a header, never a failure
        return f"wgpu_loss {wgpu_loss.__version__}; GPU: none ({e})"
