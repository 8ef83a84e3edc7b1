"""Small helpers shared by handlers: early exit, and the extend/escape
functions used by ``queue`` for sequential enumeration of discrete sites."""


class NonlocalExit(Exception):
    """Raised by ``escape`` to leave a program at ``site``."""

    def __init__(self, site, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.site = site

    def reset_stack(self):
        """Kept for API compatibility: handlers already leave the stack as the
        exception unwinds through their ``with`` blocks."""


def site_is_subsample(site):
    """Whether ``site`` records the subsample indices drawn by a plate."""
    return site["type"] == "sample" and site["infer"].get("_subsample", False)


def site_is_factor(site):
    return site["type"] == "sample" and site["infer"].get("_factor", False)


def prune_subsample_sites(trace):
    """A copy of ``trace`` without its subsample sites."""
    trace = trace.copy()
    for name, site in list(trace.nodes.items()):
        if site_is_subsample(site):
            trace.remove_node(name)
    return trace


def enum_extend(trace, msg, num_samples=None):
    """Copies of ``trace`` extended at ``msg``'s site with each value of its support."""
    extended = []
    for value in msg["fn"].enumerate_support(expand=False):
        tr = trace.copy()
        site = dict(msg)
        site["value"] = value
        site["infer"] = dict(msg["infer"])
        site["done"] = True
        site["stop"] = False
        site["continuation"] = None
        tr.add_node(msg["name"], **site)
        extended.append(tr)
    return extended


def discrete_escape(trace, msg):
    """Escape at latent discrete sample sites not yet in ``trace``."""
    return (
        msg["type"] == "sample"
        and not msg["is_observed"]
        and msg["name"] not in trace
        and getattr(msg["fn"], "has_enumerate_support", False)
    )


def all_escape(trace, msg):
    """Escape at every latent sample site not yet in ``trace``."""
    return msg["type"] == "sample" and not msg["is_observed"] and msg["name"] not in trace
