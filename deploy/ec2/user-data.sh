#!/bin/bash
# EC2 user data: installs flinkscale as the hardened systemd service of
# deploy/systemd/flinkscale.service on Amazon Linux 2023, Debian or Ubuntu.
#
# Before launching: upload three files to S3 (the instance profile's role
# needs s3:GetObject on them, and the agent's policy: print it with your
# account and region filled in by `flinkscale iam --config config.toml
# --account ACCOUNT --region REGION`; deploy/iam-policy.json has them as
# placeholders):
#   - the binary (`cargo build --release`, target/release/flinkscale; it
#     carries its built-in plugins, nothing else is needed),
#   - deploy/systemd/flinkscale.service,
#   - your configuration (README "Configuration reference"; credentials
#     come from the instance role, region from `[agent] region`).
# Checked by tests/peer/test_deploy.py (bash -n, and the paths it uses).
set -euo pipefail

BUCKET_PREFIX="s3://my-bucket/flinkscale"

# Amazon Linux ships the AWS CLI; Debian's and Ubuntu's images do not.
# Debian packages it; Ubuntu (24.04 on) has it as a snap only.
if ! command -v aws >/dev/null; then
    apt-get update -q
    apt-get install -y -q awscli || snap install aws-cli --classic
fi

aws s3 cp "$BUCKET_PREFIX/flinkscale" /usr/local/bin/flinkscale
chmod 0755 /usr/local/bin/flinkscale
install -d -m 0755 /etc/flinkscale
aws s3 cp "$BUCKET_PREFIX/config.toml" /etc/flinkscale/config.toml
chmod 0644 /etc/flinkscale/config.toml
aws s3 cp "$BUCKET_PREFIX/flinkscale.service" /etc/systemd/system/flinkscale.service

# Refuse to start on a bad file now, with every error located (plugins
# tried on sample data too), before systemd starts the unit.
/usr/local/bin/flinkscale validate /etc/flinkscale/config.toml
systemctl daemon-reload
systemctl enable --now flinkscale.service
