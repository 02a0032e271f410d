"""The records the CRM sees, with provenance, and the sink that writes them."""
