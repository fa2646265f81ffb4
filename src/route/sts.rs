//! Federation discovery: hosts of the company STS that must be reached DIRECT.
