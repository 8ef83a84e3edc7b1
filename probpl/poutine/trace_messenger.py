"""``trace``: record every site of an execution into a :class:`Trace`."""

from probpl.poutine.messenger import Messenger
from probpl.poutine.runtime import new_message
from probpl.poutine.trace_struct import Trace


class TraceMessenger(Messenger):
    """Records the messages of sample and param sites, in order.

    :param str graph_type: ``"flat"`` or ``"dense"`` (see :class:`Trace`).
    :param bool param_only: record only param sites.
    """

    def __init__(self, graph_type="flat", param_only=False):
        super().__init__()
        self.graph_type = graph_type
        self.param_only = param_only
        self.trace = Trace(graph_type=graph_type)
        self._unused = True  # self.trace is the empty one made here

    def __enter__(self):
        # Each use records a new trace; the first can fill the one made above.
        if not (getattr(self, "_unused", False) and not self.trace.nodes):
            self.trace = Trace(graph_type=self.graph_type)
        self._unused = False
        return super().__enter__()

    def __call__(self, fn):
        return TraceHandler(self, fn)

    def get_trace(self):
        """The trace recorded by the last use as a context manager."""
        return self.trace

    # One shallow copy per site: handlers further in may still change the message.
    def _pyro_post_sample(self, msg):
        if not self.param_only:
            trace, name = self.trace, msg["name"]
            if trace.graph_type == "flat" and name not in trace.nodes:
                trace.nodes[name] = msg.copy()  # all Trace._add_site does for a new site
            else:
                trace._add_site(name, msg.copy())

    def _pyro_post_param(self, msg):
        trace, name = self.trace, msg["name"]
        if trace.graph_type == "flat" and name not in trace.nodes:
            trace.nodes[name] = msg.copy()
        else:
            trace._add_site(name, msg.copy())


class TraceHandler:
    """A traced function: calling it records a trace, ``get_trace`` returns it.

    The trace also holds the call's inputs under ``"_INPUT"`` and the return
    value under ``"_RETURN"``.
    """

    def __init__(self, msngr, fn):
        self.msngr = msngr
        self.fn = fn

    def __call__(self, *args, **kwargs):
        with self.msngr as m:
            trace = m.trace  # a new, empty trace
            trace.nodes["_INPUT"] = new_message(type="args", name="_INPUT", args=args,
                                                kwargs=kwargs)
            ret = self.fn(*args, **kwargs)
            site = new_message(type="return", name="_RETURN", value=ret)
            if trace.graph_type == "flat" and "_RETURN" not in trace.nodes:
                trace.nodes["_RETURN"] = site
            else:
                trace._add_site("_RETURN", site)
        return ret

    @property
    def trace(self):
        return self.msngr.trace

    def get_trace(self, *args, **kwargs):
        """Run the function and return its :class:`Trace`."""
        self(*args, **kwargs)
        return self.msngr.trace
