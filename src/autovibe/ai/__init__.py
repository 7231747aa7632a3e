"""The AI assistant: typed plans from requests, policy-gated execution, Terraform/Ansible generation."""
