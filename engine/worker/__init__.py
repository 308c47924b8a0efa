"""The worker wing: one message is claim -> execute -> settle.

entry (the Worker's run_step / run_execution / run_sample and the safety net) hands each
message a frozen ``Message`` (context); steps, executions and samples each claim, execute
and settle their kind; perform runs a block, retry decides a retry as a value, fanout
starts consensus samples, calls records model calls. Settles return what to do after
commit (``Settled``) instead of writing to fields of a long-lived object.
"""
