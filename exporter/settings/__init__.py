"""What the operator configures: the YAML file, validated into frozen settings."""
