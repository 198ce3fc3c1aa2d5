def run_checkpointed_loops(module):
    from ..ir import write_module
    import os
    if os.environ.get("CKDUMP"):
        open(os.environ["CKDUMP"],'w').write(write_module(module))
