from test_conformance import TestRaftSingleMember, TestRaftThreeMembers
from pilothouse.testing.store_grpc import GrpcStoreConformance
class TestRaftSingleOverGrpc(GrpcStoreConformance, TestRaftSingleMember):
    pass
class TestRaftThreeOverGrpc(GrpcStoreConformance, TestRaftThreeMembers):
    pass
