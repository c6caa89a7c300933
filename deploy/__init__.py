"""Deployment files for logsync; ``deploy.local_cluster`` runs a multi-node cluster on 127.0.0.1."""
