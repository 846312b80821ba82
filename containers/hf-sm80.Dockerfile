# infpop trial image: transformers pipeline (HF engine) on A100 (compute capability 8.0).
# Generated from containers/hf-sm80.lock.toml by `python -m infpop.images recipes`; do not edit:
# tests/toolkit/test_containers.py checks that it installs exactly the lock's pins.
# Build: `make containers PROFILE=...` (a profile partition with runtime: charliecloud).
# infpop-base:bookworm is `debootstrap --variant=minbase --include=python3,python3-venv,python3-dev,ca-certificates,gcc,libc6-dev bookworm ROOTFS http://deb.debian.org/debian`,
# imported with ch-image; its tarball's sha256 is passed in as BASE_SHA256 and kept in the image.
FROM infpop-base:bookworm
ARG BASE_SHA256=none
LABEL org.infpop.image=hf-sm80 org.infpop.engine=hf org.infpop.compute_capability=8.0 org.infpop.cuda=12.8
COPY containers/hf-sm80.lock.toml /opt/infpop/lock.toml
COPY ca-certificates /usr/local/share/ca-certificates/infpop
COPY wheels /opt/infpop/wheels
RUN set -eu \
 && export DEBIAN_FRONTEND=noninteractive \
 && update-ca-certificates \
 && export PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
 && python3 -m venv /opt/infpop/venv \
 && /opt/infpop/venv/bin/python -m pip install --no-cache-dir --find-links /opt/infpop/wheels pip==25.2 setuptools==80.9.0 wheel==0.45.1 \
 && /opt/infpop/venv/bin/python -m pip install --no-cache-dir --find-links /opt/infpop/wheels torch==2.8.0 accelerate==1.10.1 transformers==4.56.2 tokenizers==0.22.1 safetensors==0.6.2 huggingface-hub==0.35.3 pydantic==2.11.7 PyYAML==6.0.2 submitit==1.5.3 tqdm==4.67.1 nvidia-ml-py==13.615.71 \
 && rm -rf /opt/infpop/wheels \
 && echo $BASE_SHA256 > /opt/infpop/base.sha256
COPY pyproject.toml /opt/infpop/src/pyproject.toml
COPY README.md /opt/infpop/src/README.md
COPY toolkit /opt/infpop/src/toolkit
RUN /opt/infpop/venv/bin/python -m pip install --no-cache-dir --no-deps --no-build-isolation /opt/infpop/src \
 && /opt/infpop/venv/bin/python -m pip freeze > /opt/infpop/pip-freeze.txt \
 && /opt/infpop/venv/bin/python -m infpop.images.smoke /opt/infpop/lock.toml hf-sm80
ENV PATH=/opt/infpop/venv/bin:$PATH PYTHONNOUSERSITE=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error
