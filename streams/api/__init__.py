"""The CRM/ERP HTTP API served by every worker: routes, bearer tokens and signed forwarding between
workers."""
