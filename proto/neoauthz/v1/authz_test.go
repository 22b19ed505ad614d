package authzv1_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// TestCheckRequestRoundTrip notices generated code that no longer matches the wire format.
func TestCheckRequestRoundTrip(t *testing.T) {
	in := &authzv1.CheckRequest{
		Subject: &authzv1.Subject{Kind: &authzv1.Subject_Principal{
			Principal: &authzv1.Principal{Tenant: "acme", User: "u-42"},
		}},
		Permission:       "users.read",
		Resource:         &authzv1.Resource{OwnerId: "u-7", TeamId: "t-1", Tenant: "globex"},
		ConsistencyToken: "nz1.EQ",
	}
	b, err := proto.Marshal(in)
	require.NoError(t, err)

	out := &authzv1.CheckRequest{}
	require.NoError(t, proto.Unmarshal(b, out))
	assert.True(t, proto.Equal(in, out), "got %v, want %v", out, in)
	assert.Equal(t, "u-42", out.GetSubject().GetPrincipal().GetUser())
	assert.Empty(t, out.GetSubject().GetToken())

	tok := &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: "eyJ..."}}
	b, err = proto.Marshal(tok)
	require.NoError(t, err)
	got := &authzv1.Subject{}
	require.NoError(t, proto.Unmarshal(b, got))
	assert.Equal(t, "eyJ...", got.GetToken())
	assert.Nil(t, got.GetPrincipal())
}

// TestFieldNumbers pins field numbers that clients in other languages rely on.
func TestFieldNumbers(t *testing.T) {
	tests := []struct {
		name string
		msg  proto.Message
		want map[protoreflect.Name]protoreflect.FieldNumber
	}{
		{"Subject", &authzv1.Subject{}, map[protoreflect.Name]protoreflect.FieldNumber{"token": 1, "principal": 2}},
		{"CheckRequest", &authzv1.CheckRequest{}, map[protoreflect.Name]protoreflect.FieldNumber{
			"subject": 1, "permission": 2, "resource": 3, "at_least_version": 4, "consistency_token": 5,
		}},
		{"CheckResponse", &authzv1.CheckResponse{}, map[protoreflect.Name]protoreflect.FieldNumber{
			"allowed": 1, "reason": 2, "version": 3, "decision_id": 4, "grant": 5, "consistency_token": 6,
		}},
		{"CheckBulkRequest", &authzv1.CheckBulkRequest{}, map[protoreflect.Name]protoreflect.FieldNumber{
			"subject": 1, "items": 2, "at_least_version": 3, "consistency_token": 4,
		}},
		{"ListPermissionsRequest", &authzv1.ListPermissionsRequest{}, map[protoreflect.Name]protoreflect.FieldNumber{
			"subject": 1, "at_least_version": 2, "consistency_token": 3,
		}},
		{"ListPermissionsResponse", &authzv1.ListPermissionsResponse{}, map[protoreflect.Name]protoreflect.FieldNumber{
			"permissions": 1, "version": 2, "consistency_token": 3,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fields := tc.msg.ProtoReflect().Descriptor().Fields()
			assert.Equal(t, len(tc.want), fields.Len(), "got %d fields, want %d", fields.Len(), len(tc.want))
			for name, num := range tc.want {
				fd := fields.ByName(name)
				require.NotNil(t, fd, "field %s is missing", name)
				assert.Equal(t, num, fd.Number(), "field %s: got %d, want %d", name, fd.Number(), num)
			}
		})
	}
	assert.Equal(t, protoreflect.EnumNumber(9), authzv1.Reason_REASON_CROSS_TENANT.Number())
	assert.Equal(t, protoreflect.EnumNumber(11), authzv1.Reason_REASON_NOT_SERVED_IN_REGION.Number())
}

func TestServiceDescriptor(t *testing.T) {
	sd := authzv1.File_neoauthz_v1_authz_proto.Services().ByName("AuthorizationService")
	require.NotNil(t, sd, "service AuthorizationService is missing")
	assert.Equal(t, protoreflect.FullName("neoauthz.v1.AuthorizationService"), sd.FullName())

	want := map[protoreflect.Name][2]protoreflect.Name{
		"Check":           {"CheckRequest", "CheckResponse"},
		"CheckBulk":       {"CheckBulkRequest", "CheckBulkResponse"},
		"ListPermissions": {"ListPermissionsRequest", "ListPermissionsResponse"},
	}
	require.Equal(t, len(want), sd.Methods().Len(), "got %d methods, want %d", sd.Methods().Len(), len(want))
	for name, io := range want {
		md := sd.Methods().ByName(name)
		require.NotNil(t, md, "method %s is missing", name)
		assert.Equal(t, io[0], md.Input().Name(), "%s input", name)
		assert.Equal(t, io[1], md.Output().Name(), "%s output", name)
		assert.False(t, md.IsStreamingClient() || md.IsStreamingServer(), "%s must be unary", name)
	}

	// The grpc-go service description must agree with the descriptor.
	gd := authzv1.AuthorizationService_ServiceDesc
	assert.Equal(t, string(sd.FullName()), gd.ServiceName)
	assert.Len(t, gd.Methods, len(want))
	assert.Empty(t, gd.Streams)
}
